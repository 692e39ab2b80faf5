"""What a new user met trying the installed CLI from another folder, each now checked as they
ran it: evaluate and export read a run's images as its training did (--skip-bad-images);
--resume takes the run's own data and recipe and never downloads; refusals print only their
error; WebP and TIFF are read and HEIC counted; usage names `mobilevit`; one cache entry per
folder; every image scored; the model card, sidecar and history agree with the run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import learnable_images, refused, run_cli, write_image_tree
from PIL import Image

from mobilevit_utils import cli, data, model_card
from mobilevit_utils.training import loop

CLASSES = ["a", "b", "c"]
QUICK = ["--preset", "quick", "--epochs", "2", "--batch-size", "8"]


def trial_tree(root):
    """root/train: 8 images a class and an empty (bad) .jpg; root/test: 7 PNGs, a WebP and a
    TIFF (read), a HEIC (a format not read) and an empty .jpg."""
    write_image_tree(root / "train", *learnable_images(8, 3), CLASSES)
    (root / "train" / "a" / "zero.jpg").write_bytes(b"")
    x, y = learnable_images(3, 3, seed=1)
    write_image_tree(root / "test", x[:7], y[:7], CLASSES)
    Image.fromarray(x[8]).save(root / "test" / "c" / "photo.webp")
    Image.fromarray(x[8]).save(root / "test" / "c" / "photo.tif")
    (root / "test" / "c" / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "test" / "b" / "zero.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """(folder, data, run): a quick run trained by the CLI with --skip-bad-images."""
    folder = tmp_path_factory.mktemp("trial")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MOBILEVIT_DATA_DIR", raising=False)
        tree = trial_tree(folder / "ds")
        args = ["train", *QUICK, "--data-dir", tree, "--out", folder / "run", "--skip-bad-images"]
        assert cli.main([str(a) for a in args]) == 0
    return folder, tree, folder / "run"


def test_evaluate_reads_the_runs_folder_as_training_did(trial, capsys, monkeypatch):
    """No --skip-bad-images: the run skipped, so evaluate does, on its own folder only. WebP and
    TIFF are scored (9 images, none dropped with the last partial batch), HEIC counted."""
    folder, tree, run = trial
    monkeypatch.chdir(folder)
    status, out, err = run_cli(
        capsys, "evaluate", "--model", run / "model.keras", "--data-dir", "ds", "--out", "rep"
    )
    assert status == 0, err
    assert "on 9 images from" in out  # 7 PNGs + WebP + TIFF, in one partial batch of 256
    assert "skipped" in err and "zero.jpg" in err  # test/b/zero.jpg, as training skipped it
    unread = [line for line in err.splitlines() if "not images this tool reads" in line]
    assert len(unread) == 1 and "skipped 1 file(s)" in unread[0] and "(.heic)" in unread[0]
    assert json.loads((folder / "rep" / "metrics.json").read_text())["num_images"] == 9

    # The same folder as an absolute path: the cache it made is found, not made again.
    caches = sorted((folder / "data" / "cache").glob("*.npz"))
    status, _, err = run_cli(
        capsys, "evaluate", "--model", run / "model.keras", "--data-dir", tree, "--out", "rep2"
    )
    assert status == 0, err
    assert sorted((folder / "data" / "cache").glob("*.npz")) == caches
    assert caches and not any(path.name.startswith("-") for path in caches)

    # A copy is not the run's folder: its bad file stops evaluate, in one line.
    shutil.copytree(tree, folder / "copy")
    (folder / "copy" / "test" / "c" / "photo.heic").unlink()  # its warning is a line of its own
    refused(
        capsys,
        *("evaluate", "--model", run / "model.keras", "--data-dir", folder / "copy"),
        *("--out", folder / "rep3"),
        says=["zero.jpg", "--skip-bad-images"],
    )


def test_evaluate_on_the_validation_split_says_it_reads_high(trial, capsys, monkeypatch):
    folder, tree, run = trial
    monkeypatch.chdir(folder)
    status, out, err = run_cli(
        capsys,
        *("evaluate", "--model", run / "model.keras", "--data-dir", tree),
        *("--split", "val", "--out", folder / "val"),
    )
    assert status == 0, err
    assert "(val split)" in out
    card = (folder / "val" / "MODEL_CARD.md").read_text()
    assert model_card.BEST_EPOCH_CAVEAT in card
    assert model_card.BEST_EPOCH_CAVEAT in (run / "MODEL_CARD.md").read_text()  # train's


def test_export_calibrates_on_the_runs_images_and_records_the_interpolation(
    trial, capsys, monkeypatch
):
    folder, tree, run = trial
    monkeypatch.chdir(folder)
    status, out, err = run_cli(
        capsys,
        *("export", "--model", run / "model.keras", "--out", folder / "tflite"),
        *("--quantization", "int8", "--calibration-samples", "8"),
    )
    assert status == 0, err
    assert "int8 calibration: 8 of the" in out
    assert "skipped" in err and "zero.jpg" in err  # skipped as training skipped it
    sidecar = json.loads((folder / "tflite" / "run_int8.json").read_text())
    assert sidecar["interpolation"] == data.INTERPOLATION == "bilinear"
    assert "bilinear" in sidecar["resize"]
    # The run's resize is that interpolation: a 48x40 photo reads as PIL's bilinear resize.
    photo = learnable_images(1, 1, size=48)[0][0, :40]
    Image.fromarray(photo).save(folder / "photo.png")
    expected = np.asarray(Image.fromarray(photo).resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(data.read_image(folder / "photo.png", (32, 32)), expected)


def test_predict_reads_webp_and_tiff_and_counts_heic(trial, capsys):
    folder, tree, run = trial
    status, out, err = run_cli(
        capsys, "predict", "--model", run / "model.keras", "--batch-size", "4", tree / "test"
    )
    assert status == 1  # zero.jpg
    rows = [line for line in out.splitlines() if line]
    assert len(rows) == 9 and any("photo.webp" in r for r in rows)  # the last batch partial
    assert any("photo.tif" in r for r in rows)
    assert sum("not images this tool reads (.heic)" in line for line in err.splitlines()) == 1
    status, _, err = run_cli(
        capsys, "predict", "--model", run / "model.keras", tree / "test" / "c" / "photo.heic"
    )
    assert status == 1 and "it is HEIC, a format this tool does not read" in err


def test_evaluation_batches_keep_the_last_partial_batch():
    x, y = learnable_images(3, 3)
    batches = data.make_batches(x[:7], y[:7], 4, num_classes=3)
    assert sum(len(labels) for _, labels in batches) == 7


def test_usage_names_the_installed_command(project, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/home/me/.local/bin/mobilevit"])
    status, out, _ = run_cli(capsys, "train", "--help")
    assert status == 0 and out.startswith("usage: mobilevit train")
    words = " ".join(out.split())  # as wrapped to the terminal
    assert "default cpu" in words and "144 min of fit" in words and "2 CPU cores" in words
    status, out, _ = run_cli(capsys, "export", "--help")
    assert "--calibration-samples N images int8 calibration" in " ".join(out.split())
    refused(capsys, "train", "--out", "r", "--epochs", "x", says="(see mobilevit train --help)")
    err = refused(
        capsys,
        *("evaluate", "--model", "missing.keras", "--out", "rep"),
        says=["No model at missing.keras", "mobilevit train --data-dir IMAGES --out RUN"],
    )
    assert "notebook" not in err


def test_a_refused_train_prints_only_its_error(project, capsys):
    write_image_tree(project / "one" / "train", *learnable_images(6, classes=1), ["only"])
    status, out, err = run_cli(
        capsys, "train", *QUICK, "--data-dir", project / "one", "--out", project / "r"
    )
    assert status == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt  # as Ctrl-C, once the epoch is committed


def interrupted_run(folder, capsys, monkeypatch):
    """A run of 3 epochs at 40x40 with --skip-bad-images, stopped after its first epoch."""
    tree = trial_tree(folder / "ds")
    real = loop.make_callbacks
    monkeypatch.setattr(
        loop, "make_callbacks", lambda *a, **k: [*real(*a, **k), _StopAfterFirstEpoch()]
    )
    status, _, err = run_cli(
        capsys,
        *("train", "--preset", "quick", "--epochs", "3", "--batch-size", "8"),
        *("--data-dir", tree, "--out", folder / "run", "--image-size", "40", "40"),
        "--skip-bad-images",
    )
    monkeypatch.setattr(loop, "make_callbacks", real)
    assert status == 130 and "rerun with --resume" in err, err
    return tree, folder / "run"


def test_resume_takes_the_runs_data_and_recipe_and_never_downloads(project, capsys, monkeypatch):
    tree, run = interrupted_run(project, capsys, monkeypatch)

    def download(*args, **kwargs):
        raise AssertionError("--resume of a run on a local folder downloaded CIFAR-10")

    monkeypatch.setattr(data, "load_cifar10_download", download)
    status, out, err = run_cli(capsys, "train", "--resume", "--out", run, "--preset", "cpu")
    assert status == 2 and out == "" and "the quick recipe, not cpu" in err, err
    status, out, err = run_cli(capsys, "train", "--resume", "--out", run, "--epochs", "5")
    assert status == 2 and out == "" and "epochs 3, not 5" in err, err
    tree.rename(project / "moved")
    refused(capsys, "train", "--resume", "--out", run, says=[f"started on {tree}", "is gone"])
    (project / "moved").rename(tree)

    # From another folder, with a fresh home: the installed command as a user runs it.
    home, elsewhere = project / "home", project / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    script = Path(sys.executable).with_name("mobilevit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mobilevit_utils"]
    drop = ("MOBILEVIT_DATA_DIR", "KERAS_HOME", "MOBILEVIT_ARTIFACTS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(home), KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [*command, "train", "--resume", "--out", str(run)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best checkpoint: " in done.stdout and "zero.jpg" in done.stderr  # skipped again
    assert not (home / ".keras" / "datasets").exists()
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["input_shape"] == [40, 40, 3] and metadata["preset"] == "quick"
    # history.csv keeps Keras' numbering from 0; best_epoch counts from 1, as the epoch lines do.
    rows = (run / "history.csv").read_text().splitlines()[1:]
    epochs = [int(row.split(",")[0]) for row in rows]
    assert epochs == [0, 1, 2]
    columns = (run / "history.csv").read_text().splitlines()[0].split(",")
    accuracy = [float(row.split(",")[columns.index("val_accuracy")]) for row in rows]
    assert metadata["best_epoch"] == epochs[int(np.argmax(accuracy))] + 1
