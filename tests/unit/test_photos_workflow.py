"""The parts of the photos-to-app path that need no training: how a run records the way images
are fitted to its input, where `export` finds its calibration images and what it names its
files, and the command line's flags for them."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevit_utils import cli, inference, training
from mobilevit_utils.cli import export as export_cli
from mobilevit_utils.run_files import RunMetadata
from mobilevit_utils.training import report


def test_resize_choices_are_recorded_only_when_made():
    plain = RunMetadata(class_names=["a", "b"], input_shape=[32, 32, 3])
    assert plain.resize_mode == "stretch"
    assert not {"data_dir", "crop_to_aspect_ratio", "command"} & set(plain.to_dict())
    cropped = RunMetadata(input_shape=[32, 32, 3], crop_to_aspect_ratio=True, data_dir="/p")
    assert cropped.to_dict()["crop_to_aspect_ratio"] is True and cropped.resize_mode == "crop"
    assert cropped.resize_options == {"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": False}
    assert RunMetadata.from_dict(cropped.to_dict()) == cropped


def test_a_recipe_crops_or_pads_not_both():
    with pytest.raises(ValueError, match="choose one"):
        training.TrainConfig(crop_to_aspect_ratio=True, pad_to_aspect_ratio=True).validate()
    flags = cli.build_parser().parse_args(
        ["train", "--out", "x", "--crop-to-aspect-ratio", "--preset", "finetune"]
    )
    assert cli.train_overrides(flags) == {"crop_to_aspect_ratio": True}


def test_the_first_line_names_the_size_and_how():
    finetune = training.RECIPES["finetune"]
    line = report.input_line(finetune, (32, 32))
    assert line.startswith("input: 32x32 (mobilevit_xxs_cifar10's input")
    assert "stretched" in line and "apple/mobilevit-xx-small" in line
    padded = training.TrainConfig(pad_to_aspect_ratio=True)
    assert "black bars" in report.input_line(padded, (64, 48), asked=True)
    assert "most common size" in report.input_line(training.TrainConfig(), None, data_dir="d")


def test_prediction_fits_images_as_training_did(tmp_path):
    class Flat:  # a "model" that reports the mean of the left and right columns
        input_shape = (None, 32, 32, 3)

        def __call__(self, x, training=False):
            x = np.asarray(x)
            return np.stack([x[:, :, :4].mean((1, 2, 3)), x[:, :, -4:].mean((1, 2, 3))], -1)

    wide = np.zeros((32, 64, 3), "uint8")
    wide[:, :16] = 255  # white on the left quarter only: a centre crop loses it
    Image.fromarray(wide).save(tmp_path / "wide.png")
    paths = [tmp_path / "wide.png"]
    stretched = inference.predict_files(Flat(), paths, ["left", "right"], top_k=1)
    cropped = inference.predict_files(
        Flat(), paths, ["left", "right"], top_k=1, crop_to_aspect_ratio=True
    )
    assert stretched.loc[0, "class_1"] == "left" and cropped.loc[0, "probability_1"] == 0.5


def args(tmp_path, **values):
    defaults = {"model": str(tmp_path / "runs" / "flowers" / "model.keras"), "name": None}
    return argparse.Namespace(**{**defaults, **values})


def test_exported_files_are_named_after_the_run(tmp_path):
    assert export_cli.file_name(args(tmp_path)) == "flowers"
    assert export_cli.file_name(args(tmp_path, model=str(tmp_path / "mine.keras"))) == "mine"
    assert export_cli.file_name(args(tmp_path, name="app")) == "app"


def test_calibration_comes_from_the_training_folder_or_a_one_line_refusal(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    found = export_cli.training_folder(RunMetadata(data_dir=str(photos)))
    assert found == photos
    for metadata, says in [
        (RunMetadata(data_dir=str(tmp_path / "moved")), "moved is gone"),
        (RunMetadata(), "no run metadata"),
        (RunMetadata(data_source="synthetic"), "(synthetic) are not found"),
    ]:
        with pytest.raises(cli.CLIError) as error:
            export_cli.training_folder(metadata)
        message = str(error.value)
        assert says in message and "--calibration-data FOLDER" in message
        assert "--quantization fp32" in message and "\n" not in message


def test_cifar10_is_used_only_from_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    cifar = RunMetadata(data_source="keras.datasets.cifar10")
    if not (Path("/tmp/.keras") / "datasets" / "cifar-10-batches-py-target").is_dir():
        with pytest.raises(cli.CLIError, match="not in Keras' cache"):
            export_cli.training_folder(cifar)
    (tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target").mkdir(parents=True)
    assert export_cli.training_folder(cifar) is None  # load_cifar10_download, from the cache


def test_the_sidecar_says_how_to_resize_and_carries_the_card():
    metadata = RunMetadata(
        model="mobilevit_xxs_cifar",
        class_names=["a", "b"],
        input_shape=[32, 32, 3],
        pad_to_aspect_ratio=True,
        best_val_accuracy=0.75,
        val_images=16,
        train_images=64,
    )
    extras = export_cli.sidecar_extras("flowers", metadata.to_dict())
    assert extras["name"] == "flowers" and extras["pad_to_aspect_ratio"] is True
    assert extras["resize"].startswith("resize the whole image to fit 32x32")
    card = extras["model_card"]
    assert card["accuracy"] == 0.75 and card["accuracy_95_interval"][0] < 0.75
    json.dumps(extras)  # the sidecar is JSON
