"""tools/release_checkpoint.py: copy, evaluate, export and write the README's results table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import learnable_images, write_image_tree

from mobilevit_utils import presets, training

pytest.importorskip("ai_edge_litert")

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- reference-results:start -->", "<!-- reference-results:end -->"


def test_release_evaluates_exports_and_rewrites_readme(trained_run, tmp_path):
    metadata = json.loads((trained_run / "metadata.json").read_text())
    # A data folder with the run's classes and no test/ split: the release must evaluate on the
    # validation split carved the way training carves it, and say so.
    write_image_tree(tmp_path / "data" / "train", *learnable_images(20), metadata["class_names"])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nstale table\n{END}\noutro\n")
    out = tmp_path / "checkpoints" / "release"

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "release_checkpoint.py"),
            str(trained_run),
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--precisions",
            "fp32",
            "int8",
            "--readme",
            str(readme),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "MOBILEVIT_ARTIFACTS": str(tmp_path / "artifacts")},
    )
    assert result.returncode == 0, result.stderr[-2000:]

    for name in (
        "model.keras",
        "metadata.json",
        "config.json",
        "history.csv",
        "learning_curves.png",
        "results.json",
        "results.md",
        "report/metrics.json",
        "report/confusion_matrix.png",
    ):
        assert (out / name).exists(), name
    assert training.find_run(out) == out

    results = json.loads((out / "results.json").read_text())
    evaluation = results["evaluation"]
    assert evaluation["split"] == "val" and evaluation["num_images"] == 6  # 10 % of 60, stratified
    assert results["training"]["epochs"] == metadata["epochs_completed"]
    assert set(results["tflite"]) == {"fp32", "int8"}
    # The float32 TFLite file is the same function as the Keras model.
    assert results["tflite"]["fp32"]["accuracy"] == pytest.approx(evaluation["accuracy"])
    assert results["tflite"]["int8"]["size_kb"] < results["tflite"]["fp32"]["size_kb"]

    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{END}\noutro\n")
    assert "stale table" not in text
    assert f"**{evaluation['accuracy']:.2%}**" in text
    assert "validation split held out from the training images" in text
    assert f"{results['evaluation_flip_tta']['accuracy']:.2%} (prediction averaged" in text
    assert f"{results['evaluation_flip_shift_tta']['accuracy']:.2%} (the image and its" in text
    # The fixture's run changed the quick preset's epochs and batch size: the command says so.
    assert "train --preset quick --epochs 3 --batch-size 8 --seed 42 --data-dir" in text
    assert text.count(START) == 1 and (out / "results.md").read_text() in text


def test_release_of_a_folder_without_a_run_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "release_checkpoint.py"),
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "out"),
            "--readme",
            "",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: No checkpoint at")


def test_find_run_downloads_the_release_when_asked(trained_run, tmp_path, monkeypatch):
    """Where the package was installed without its checkpoints, notebooks 04/05 fetch the
    release (hash-checked) into Keras' cache."""
    import dataclasses
    import hashlib
    import shutil

    import keras

    repo = tmp_path / "repo"
    preset = presets.PRESETS[training.RELEASED_PRESET]
    published = repo.joinpath("raw", "main", preset.checkpoint)
    published.mkdir(parents=True)
    for name in ("model.keras", "metadata.json"):
        shutil.copy2(trained_run / name, published / name)
    hashes = {
        name: hashlib.sha256((published / name).read_bytes()).hexdigest()
        for name in ("model.keras", "metadata.json")
    }
    monkeypatch.setitem(
        presets.PRESETS, training.RELEASED_PRESET, dataclasses.replace(preset, sha256=hashes)
    )
    monkeypatch.setattr(presets, "packaged_checkpoints", lambda: tmp_path / "not-installed")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("MOBILEVIT_DATA_DIR", raising=False)  # CIFAR-10's download, as on Colab
    monkeypatch.chdir(tmp_path)  # outside any checkout: no notebook 03 run, no release on disk

    with pytest.raises(FileNotFoundError, match="run notebook 03_training first"):
        training.find_run()
    run = training.find_run(download_from=repo.as_uri())
    assert run == tmp_path / "keras-home" / "mobilevit" / Path(preset.checkpoint).name
    assert (
        presets.from_preset(training.RELEASED_PRESET, download_from=repo.as_uri()).output_shape[-1]
        == 3
    )
    names = json.loads((run / "metadata.json").read_text())["class_names"]
    assert names == json.loads((trained_run / "metadata.json").read_text())["class_names"]
    assert keras.saving.load_model(run / "model.keras", safe_mode=True).output_shape == (
        None,
        len(names),
    )


def test_release_of_a_final_fit_reports_its_twins_held_out_score(
    trained_run, tmp_path, monkeypatch
):
    """A run on every training image (validation_split=0) is released with the score of the
    same recipe's run that held out a validation split, and says so."""
    metadata = json.loads((trained_run / "metadata.json").read_text())
    data_dir = tmp_path / "data"
    write_image_tree(data_dir / "train", *learnable_images(20), metadata["class_names"])
    final = tmp_path / "final"
    training.train(
        "quick",
        run_dir=final,
        data_dir=data_dir,
        validation_split=0.0,
        epochs=3,
        batch_size=8,
        print_fn=lambda line: None,
    )
    command = [
        sys.executable,
        str(ROOT / "tools" / "release_checkpoint.py"),
        str(final),
        *("--data-dir", str(data_dir), "--out", str(tmp_path / "release")),
        *("--precisions", "fp32", "--readme", ""),
    ]
    # In this process, through the command's main (which exits with its one-line error): the
    # script itself runs as a subprocess in test_release_evaluates_exports_and_rewrites_readme.
    sys.path.insert(0, str(ROOT / "tools"))
    import release_checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path / "artifacts"))
    with pytest.raises(SystemExit) as refused:
        release_checkpoint.main(command[2:])
    assert str(refused.value.code).startswith("error: ")
    assert "pass --twin RUN" in str(refused.value.code)
    assert not (tmp_path / "release").exists()

    release_checkpoint.main([*command[2:], "--twin", str(trained_run)])
    results = json.loads((tmp_path / "release" / "results.json").read_text())
    assert results["scored_by_twin"] == trained_run.as_posix()
    assert results["training"]["train_images"] == 60  # every image of the folder
    assert results["evaluation"]["split"] == "val" and results["evaluation"]["num_images"] == 6
    table = (tmp_path / "release" / "results.md").read_text()
    assert "final fit on all 60 training images, these included" in table
    assert f"--twin {trained_run.as_posix()}" in table
    # The released weights' own TFLite file, for shipping, beside the twin's scored one.
    assert len(list((tmp_path / "artifacts" / "tflite" / "release").glob("*_fp32.tflite"))) == 1
    assert (
        len(list((tmp_path / "artifacts" / "tflite" / "release-twin").glob("*_fp32.tflite"))) == 1
    )


def test_a_final_fit_release_is_scored_by_its_twin(trained_run, tmp_path, monkeypatch, capsys):
    """A final fit has no held-out images of its own: where the data has no test split (as
    offline here), and for validation curves, find_run gives its twin, and says so."""
    import shutil

    for name in ("final", "twin"):
        shutil.copytree(trained_run, tmp_path / "checkpoints" / name)
    monkeypatch.setitem(
        presets.PRESETS, "final", presets.Preset("final fit", "checkpoints/final", twin="twin")
    )
    monkeypatch.setitem(presets.PRESETS, "twin", presets.Preset("twin", "checkpoints/twin"))
    monkeypatch.setattr(training.tutorial, "RELEASED_PRESET", "final")  # where find_run reads it
    monkeypatch.setattr(presets, "packaged_checkpoints", lambda: tmp_path / "checkpoints")
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path / "artifacts"))  # no notebook 03 run
    monkeypatch.chdir(tmp_path)
    no_test, with_test = tmp_path / "offline", tmp_path / "official"
    images = (*learnable_images(2), ["class0", "class1", "class2"])
    write_image_tree(no_test / "train", *images)
    for split in ("train", "test"):
        write_image_tree(with_test / split, *images)

    assert training.find_run(data_dir=no_test) == tmp_path / "checkpoints" / "twin"
    assert "this data has no test split: its twin twin" in capsys.readouterr().out
    assert training.find_run(data_dir=with_test) == tmp_path / "checkpoints" / "final"
    assert capsys.readouterr().out == ""
    assert training.find_run(data_dir=with_test, validated=True).name == "twin"
    assert "it has no validation curves" in capsys.readouterr().out


def test_release_refuses_a_validated_run_into_a_final_fits_folder(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    import release_checkpoint

    monkeypatch.setitem(
        presets.PRESETS, "final", presets.Preset("final fit", "checkpoints/final", twin="twin")
    )
    monkeypatch.setitem(presets.PRESETS, "twin", presets.Preset("twin", "checkpoints/twin"))
    monkeypatch.chdir(tmp_path)
    final, twin = tmp_path / "checkpoints" / "final", tmp_path / "checkpoints" / "twin"
    with pytest.raises(ValueError, match="release it with --out checkpoints/twin"):
        release_checkpoint._refuse_twin_folder(final, 0.1)
    release_checkpoint._refuse_twin_folder(final, 0.0)  # the final fit itself
    release_checkpoint._refuse_twin_folder(twin, 0.1)  # the twin, to its own folder
