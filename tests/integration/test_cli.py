"""The command line on bad input: every refusal is one line on stderr with exit status 2 and
leaves nothing behind; files a user never meant to include are ignored; bad image files are
named, and skipped on request."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import learnable_images, refused, run_cli, write_image_tree
from PIL import Image

from mobilevit_utils import data, environment

run = run_cli  # the shared helpers, under this file's names


def refused_training(capsys, data_dir, out, says):
    """A quick-preset `train` on `data_dir` is refused, and leaves no run folder."""
    refused(capsys, "train", "--preset", "quick", "--data-dir", data_dir, "--out", out, says=says)
    assert not Path(out).exists()


def image_tree(root, classes=("a", "b", "c"), per_class=8, size=32):
    x, y = learnable_images(per_class, len(classes), size)
    return write_image_tree(root / "train", x, y, list(classes)).parent


def test_numeric_flags_are_checked_before_anything_runs(project, capsys):
    out = project / "run"
    for flags, says in [
        (("--lr", "-1"), "--lr must be above 0, got -1.0"),
        (("--lr", "0"), "--lr must be above 0, got 0.0"),
        (("--epochs", "0"), "--epochs must be at least 1, got 0"),
        (("--batch-size", "-8"), "--batch-size must be at least 1, got -8"),
        (("--label-smoothing", "1.5"), "--label-smoothing must be at least 0 and below 1"),
        (("--validation-split", "1.5"), "--validation-split must be at least 0 and below 1"),
        (("--max-per-class", "0"), "--max-per-class must be at least 1, got 0"),
        (("--seed", "-3"), "--seed must be at least 0, got -3"),
        (("--image-size", "0", "32"), "--image-size must be at least 32 32, got 0 32"),
        (("--lr", "fast"), "argument --lr: invalid float value: 'fast'"),
        (("--image-size", "32"), "argument --image-size: expected 2 arguments"),
    ]:
        refused(capsys, "train", "--out", out, *flags, says=says)
    assert not out.exists()
    refused(capsys, "predict", "--model", "m.keras", "--top-k", "0", "x.jpg", says="--top-k")
    refused(
        capsys,
        "export",
        "--model",
        "m.keras",
        "--out",
        project / "e",
        "--calibration-samples",
        "0",
        says="--calibration-samples must be at least 1",
    )
    refused(capsys, "train", "--preset", "turbo", "--out", out, says="invalid choice: 'turbo'")


def test_output_paths_that_are_files_or_hold_results(project, capsys):
    (project / "file").write_text("")
    refused(capsys, "train", "--out", project / "file", says=["is a file", "folder"])
    refused(capsys, "export", "--model", "m.keras", "--out", project / "file", says="is a file")
    (project / "exported").mkdir()
    (project / "exported" / "model_fp32.tflite").write_bytes(b"x")
    refused(
        capsys,
        "export",
        "--model",
        "m.keras",
        "--out",
        project / "exported",
        says=["already holds 1 TFLite model", "--overwrite"],
    )
    assert (project / "exported" / "model_fp32.tflite").read_bytes() == b"x"  # untouched
    (project / "held").mkdir()
    (project / "held" / "history.csv").write_text("epoch\n")
    refused(
        capsys,
        "train",
        "--data-dir",
        image_tree(project / "ds"),
        "--out",
        project / "held",
        says=["--resume", "--overwrite"],
    )


def test_degenerate_datasets_are_refused_and_leave_nothing(project, capsys):
    one = project / "one"
    write_image_tree(one / "train", *learnable_images(6, classes=1), ["only"])
    refused_training(capsys, one, project / "r1", says="needs at least 2 class folders")

    tree = image_tree(project / "ds")
    (tree / "train" / "empty").mkdir()
    refused_training(capsys, tree, project / "r2", says=["empty", "holds no images", "remove it"])


def test_hidden_files_and_folders_are_never_images_or_classes(project):
    tree = image_tree(project / "ds")
    train = tree / "train"
    (train / ".ipynb_checkpoints").mkdir()  # Jupyter's, empty
    (train / ".git").mkdir()
    (train / ".git" / "x.jpg").write_bytes(b"not an image")
    (train / "a" / "._0000.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS
    paths, labels, names = data.list_image_folder(train)
    assert names == ("a", "b", "c") and len(paths) == 24
    assert not any(part.startswith(".") for p in paths for part in p.parts[-2:])
    dataset = data.load_dataset(tree, validation_split=0.25)
    assert dataset.class_names == ("a", "b", "c") and dataset.skipped_files == ()


def test_bad_image_files_say_what_is_wrong(project, capsys):
    tree = image_tree(project / "ds")
    folder = tree / "train" / "a"
    cases = {
        "empty.jpg": "is empty (0 bytes)",
        "text.jpg": "is not an image that Pillow can read",
        "link.jpg": "is a broken symbolic link",
    }
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello")
    os.symlink(project / "gone.jpg", folder / "link.jpg")
    for name, reason in cases.items():
        with pytest.raises(data.BadImageError) as info:
            data.decode_images([folder / name])
        message = str(info.value)
        assert reason in message and str(folder / name) in message, message
        assert "--skip-bad-images" in message and "\n" not in message
        assert "BytesIO" not in message
    refused_training(capsys, tree, project / "r", says=["Cannot decode", "--skip-bad-images"])


def test_mixed_sizes_are_resized_to_the_most_common_and_name_the_flag(project, caplog):
    """Every phone folder mixes sizes; image_dataset_from_directory resizes them, and so do we."""
    tree = image_tree(project / "ds")
    Image.new("RGB", (20, 24)).save(tree / "train" / "a" / "other.png")
    with caplog.at_level("WARNING", logger="mobilevit_utils"):
        dataset = data.load_dataset(tree)
    assert dataset.x_train.shape[1:3] == dataset.x_val.shape[1:3] != (24, 20)
    assert "--image-size HEIGHT WIDTH" in caplog.text


def test_damaged_model_files_say_what_is_wrong(project, capsys):
    (project / "text.keras").write_text("not a model")
    (project / "folder.keras").mkdir()
    (project / "bad.tflite").write_bytes(b"\x00" * 64)
    Image.new("RGB", (32, 32)).save(project / "photo.png")
    refused(
        capsys,
        "predict",
        "--model",
        project / "text.keras",
        project,
        says="is not a valid .keras archive",
    )
    refused(
        capsys,
        "predict",
        "--model",
        project / "folder.keras",
        project,
        says="is a folder, not a .keras file",
    )
    refused(
        capsys,
        "evaluate",
        "--model",
        project / "bad.tflite",
        "--out",
        project / "rep",
        says="is not a valid TFLite model",
    )


def test_a_truncated_checkpoint_is_named_damaged(project, capsys, trained_run):
    blob = (trained_run / "model.keras").read_bytes()
    (project / "cut.keras").write_bytes(blob[: len(blob) // 2])
    Image.new("RGB", (32, 32)).save(project / "photo.png")
    refused(
        capsys, "predict", "--model", project / "cut.keras", project, says=["cut.keras", "damaged"]
    )


def test_int8_export_offline_names_calibration_data(project, capsys, trained_run, monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure: [Errno -3] DNS")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    refused(
        capsys,
        "export",
        "--model",
        trained_run / "model.keras",
        "--quantization",
        "int8",
        "--out",
        project / "e",
        says="--calibration-data",
    )


def test_offline_data_message_names_the_flag(project, monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure: [Errno -3] DNS")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(data.DataUnavailableError, match="--data-dir"):
        data.load_dataset()


def test_skip_bad_images_image_size_and_folder_predictions(project, capsys):
    """Train with a bad file skipped and mixed sizes resized; then evaluate (no test split: the
    output says so; no top-5 with 3 classes) and predict a folder holding a bad file."""
    tree = image_tree(project / "ds", per_class=10, size=20)
    folder = tree / "train" / "b"
    (folder / "zero.jpg").write_bytes(b"")
    Image.fromarray(np.full((40, 28, 3), 200, "uint8")).save(folder / "large.png")
    run_dir = project / "run"
    status, out, err = run(
        capsys,
        "train",
        "--preset",
        "quick",
        "--data-dir",
        tree,
        "--out",
        run_dir,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--image-size",
        "32",
        "32",
        "--skip-bad-images",
        "--resume",
    )
    assert status == 0, err
    # Relative where the run is inside the working directory or the repository, else in full.
    shown = environment.readable_path(run_dir)
    assert f"no run to resume in {shown}: starting a new one" in out
    assert f"skipped {folder / 'zero.jpg'}: it is empty (0 bytes)" in err
    assert "skipped 1 unreadable file(s) of 32" in err
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["input_shape"] == [32, 32, 3]
    assert metadata["train_images"] + metadata["val_images"] == 31

    status, out, err = run(
        capsys,
        "evaluate",
        "--model",
        run_dir / "model.keras",
        "--data-dir",
        tree,
        "--out",
        project / "report",
        "--skip-bad-images",
    )
    assert status == 0, err
    assert "no test split in the data: evaluating the validation split" in out
    assert "accuracy=" in out and "top5_accuracy" not in out
    assert "(val split)" in out

    photos = project / "photos"
    shutil.copytree(tree / "train" / "a", photos / "nested")
    (photos / "broken.jpg").write_bytes(b"")
    (photos / ".hidden.jpg").write_bytes(b"")
    status, out, err = run(
        capsys,
        "predict",
        "--model",
        run_dir / "model.keras",
        "--batch-size",
        "4",
        "--top-k",
        "5",
        photos,
        project / "missing.jpg",
    )
    assert status == 1
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 10 and all(line.count(", ") == 2 for line in lines)  # top-k: 3 classes
    assert f"error: {photos / 'broken.jpg'}: it is empty (0 bytes)" in err
    assert f"error: {project / 'missing.jpg'}: no such file or folder" in err
    assert "error: 2 of 12 input(s) failed" in err and ".hidden" not in out + err

    for suffix in ("csv", "jsonl"):
        target = project / f"results.{suffix}"
        status, out, err = run(
            capsys,
            "predict",
            "--model",
            run_dir / "model.keras",
            "--output",
            target,
            photos / "nested",
        )
        assert status == 0 and "10 image(s) predicted" in out
        rows = target.read_text().splitlines()
        if suffix == "csv":
            assert (
                rows[0] == "path,class_1,probability_1,class_2,probability_2,class_3,probability_3"
            )
            assert len(rows) == 11
        else:
            records = [json.loads(row) for row in rows]
            assert len(records) == 10 and len(records[0]["top"]) == 3
            assert abs(sum(t["probability"] for t in records[0]["top"]) - 1) < 1e-4
    refused(
        capsys,
        "predict",
        "--model",
        run_dir / "model.keras",
        "--output",
        "r.txt",
        photos,
        says="--output must end in .csv or .jsonl",
    )


def test_conflicting_flags_and_unwritable_outputs_are_refused_first(project, capsys, trained_run):
    out = project / "run"
    refused(
        capsys,
        "train",
        "--preset",
        "finetune",
        "--model",
        "v2_050_cifar",
        "--out",
        out,
        says=["--model and --init-from", "--init-from none"],
    )
    refused(
        capsys, "train", "--head-epochs", "2", "--out", out, says="--head-epochs needs --init-from"
    )
    assert not out.exists()
    (project / "file").write_text("")
    model = trained_run / "model.keras"
    refused(
        capsys, "evaluate", "--model", model, "--out", project / "file" / "report", says="is a file"
    )
    (project / "folder.csv").mkdir()
    refused(
        capsys,
        "predict",
        "--model",
        model,
        "--output",
        project / "folder.csv",
        project,
        says="is a folder",
    )
    refused(
        capsys,
        "export",
        "--model",
        model,
        "--quantization",
        "fp32",
        "--out",
        project / "tflite",
        "--eval-data",
        project / "missing",
        says="does not exist",
    )
    assert not (project / "tflite").exists()  # refused before converting anything


def test_macos_zip_folders_are_ignored(project):
    tree = image_tree(project / "ds")
    (tree / "train" / "__MACOSX").mkdir()
    (tree / "train" / "__MACOSX" / "._0001.jpg").write_bytes(b"\x00")
    assert data.list_image_folder(tree / "train")[2] == ("a", "b", "c")
