"""The command line's contract with its inputs: only a user's errors are one line (a bug keeps its
traceback); the recipe flags are generated from TrainConfig and reproduce any recipe; a model's
metadata must fit it; a model that applies softmax is not given a second one; F1 covers the
classes that have images; paths that cannot work are refused before anything is written."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import learnable_images, random_images, refused, run_cli, write_image_tree

from mobilevit_utils import cli, data, errors, evaluation, inference, training
from mobilevit_utils.cli import train as train_cli

ROOT = Path(__file__).resolve().parents[2]


run = run_cli  # the shared helpers, under this file's names


def tiny_classifier(folder, classes=("airplane", "automobile"), last="dense"):
    """A plain Keras model (not this package's) saved as folder/model.keras with its class names
    in folder/model.json. `last`: "dense" (logits), "dense_softmax", "softmax" (a Softmax layer)
    or "activation" (Activation("softmax")). Bright red images score the first class high."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(
        len(classes), activation="softmax" if last == "dense_softmax" else None
    )
    x = dense(x)
    if last == "softmax":
        x = keras.layers.Softmax()(x)
    elif last == "activation":
        x = keras.layers.Activation("softmax")(x)
    model = keras.Model(inputs, x, name="tiny")
    kernel = np.zeros((3, len(classes)), "float32")
    kernel[0, 0], kernel[0, 1:] = 4.0, -4.0  # red: class 0
    dense.set_weights([kernel, np.zeros(len(classes), "float32")])
    model.save(folder / "model.keras")
    (folder / "model.json").write_text(json.dumps({"class_names": list(classes)}))
    return model, folder / "model.keras"


def red_image(path, level=200):
    from PIL import Image

    pixels = np.zeros((32, 32, 3), "uint8")
    pixels[..., 0] = level
    Image.fromarray(pixels).save(path)
    return path


# --------------------------------------------------------------------------------------------
# Recipe flags


def _other_value(flag, value):
    """A valid value of the field other than `value`."""
    if flag.kind is bool:
        return not value
    if flag.choices:
        return next(c for c in flag.choices if c != value)
    if flag.kind is train_cli._jit_value:
        return {True: False, False: "auto", "auto": True}[value]
    if flag.kind is int:
        return 1 if value is None else value + 1
    if flag.kind is float:
        return 0.25 if value is None or value == 0.5 else value / 2
    return "mobilevit_xxs_cifar10" if value != "mobilevit_xxs_cifar10" else None


def _round_trip(config):
    command, unexpressed = cli.train_command(config.to_dict(), "data", "runs/x")
    assert unexpressed == {}, command
    args = cli.build_parser().parse_args(command.split()[3:])
    assert (args.data_dir, args.out) == ("data", "runs/x")
    return dataclasses.replace(training.get_recipe(args.preset), **cli.train_overrides(args))


def test_every_recipe_field_has_a_flag_that_train_command_round_trips():
    flags = train_cli.recipe_flags()
    fields = [f.name for f in dataclasses.fields(training.TrainConfig)]
    assert list(flags) == [name for name in fields if name != "name"]
    assert flags["learning_rate"].flag == "--lr" and flags["batch_size"].flag == "--batch-size"
    for preset in training.RECIPES.values():
        assert _round_trip(preset) == preset
        for field, flag in flags.items():
            changed = dataclasses.replace(
                preset, **{field: _other_value(flag, getattr(preset, field))}
            )
            assert _round_trip(changed) == changed, field
            if flag.optional:  # `--flag none`
                cleared = dataclasses.replace(preset, **{field: None})
                assert _round_trip(cleared) == cleared, field


def test_a_new_recipe_field_gets_a_flag_without_a_cli_edit(monkeypatch):
    extended = dataclasses.make_dataclass(
        "TrainConfig",
        [("new_knob", float, dataclasses.field(default=0.5, metadata={"help": "a new knob"}))],
        bases=(training.TrainConfig,),
        frozen=True,
    )
    monkeypatch.setattr(training, "TrainConfig", extended)
    for name, recipe in list(training.RECIPES.items()):
        monkeypatch.setitem(training.RECIPES, name, extended(**recipe.to_dict()))
    train_cli.recipe_flags.cache_clear()
    try:
        flag = train_cli.recipe_flags()["new_knob"]
        assert (flag.flag, flag.kind, flag.help) == ("--new-knob", float, "a new knob")
        args = cli.build_parser().parse_args(["train", "--out", "r", "--new-knob", "0.75"])
        assert cli.train_overrides(args) == {"new_knob": 0.75}
        recipe = dataclasses.replace(training.RECIPES["cpu"], new_knob=0.125)
        command, unexpressed = cli.train_command(recipe.to_dict())
        assert "--new-knob 0.125" in command and unexpressed == {}
        assert (
            "--new-knob X"
            in cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
        )
    finally:
        train_cli.recipe_flags.cache_clear()


def test_recipe_flags_are_checked_with_their_names(project, capsys):
    out = project / "run"
    for flags, says in [
        (("--num-heads", "0"), "--num-heads must be at least 1"),
        (("--ema", "--weight-averaging"), "--ema and --weight-averaging"),
        (("--validation-split", "0", "--schedule", "plateau"), "--schedule plateau"),
        (("--schedule", "linear"), "invalid choice: 'linear'"),
        (("--gradient-clip-norm", "-1"), "--gradient-clip-norm must be above 0"),
        (("--jit-compile", "maybe"), "expected auto, true or false"),
    ]:
        refused(capsys, "train", "--out", out, *flags, says=says)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# User errors and bugs


def test_an_internal_error_is_a_traceback_and_a_user_error_one_line(project, capsys, monkeypatch):
    _, model_path = tiny_classifier(project / "m")
    image = red_image(project / "red.png")

    def broken(*args, **kwargs):
        raise ValueError("an internal fault")

    monkeypatch.setattr(inference, "predict_proba", broken)
    with pytest.raises(ValueError, match="an internal fault"):
        cli.main(["predict", "--model", str(model_path), str(image)])
    monkeypatch.undo()
    # The same from a shell: a traceback and exit status 1, not a one-line "user error".
    script = (
        "import sys; from mobilevit_utils import cli, inference\n"
        "def broken(*a, **k): raise ValueError('an internal fault')\n"
        "inference.predict_proba = broken\n"
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "predict", "--model", str(model_path), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
        cwd=ROOT,
    )
    assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr[-2000:]
    assert "ValueError: an internal fault" in result.stderr
    refused(
        capsys,
        "train",
        "--preset",
        "quick",
        "--data-dir",
        project / "none",
        "--out",
        project / "run",
        says="does not exist",
    )
    assert not (project / "run").exists()


def test_interrupted_training_says_how_to_resume(project, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    status, _, err = run(capsys, "train", "--out", project / "run")
    assert status == 130 and "rerun with --resume" in err


def test_paths_that_cannot_work_are_refused_before_anything_is_written(
    project, capsys, monkeypatch
):
    x, y = learnable_images(6, 2)
    tree = write_image_tree(project / "ds" / "train", x, y, ["a", "b"]).parent
    refused(
        capsys,
        "train",
        "--preset",
        "quick",
        "--data-dir",
        tree,
        "--out",
        tree / "runs" / "x",
        says=["is inside --data-dir", "outside the data"],
    )
    assert not (tree / "runs").exists()
    monkeypatch.setenv("MOBILEVIT_DATA_DIR", str(tree))
    refused(capsys, "train", "--out", tree / "r", says="inside $MOBILEVIT_DATA_DIR")
    monkeypatch.delenv("MOBILEVIT_DATA_DIR")
    (project / "data.txt").write_text("")
    for command in (
        ["train", "--preset", "quick", "--out", project / "run", "--data-dir"],
        ["evaluate", "--model", "m.keras", "--out", project / "report", "--data-dir"],
    ):
        refused(capsys, *command, project / "data.txt", says=["data.txt is a file", "folder"])
    assert not (project / "run").exists() and not (project / "report").exists()


# --------------------------------------------------------------------------------------------
# Models and their metadata


@pytest.mark.parametrize("last", ["dense_softmax", "softmax", "activation"])
def test_predict_does_not_apply_softmax_twice(project, capsys, last):
    model, model_path = tiny_classifier(project / "m", last=last)
    image = red_image(project / "red.png")
    assert inference.outputs_probabilities(model)
    want = keras.ops.convert_to_numpy(model(np.asarray(keras.utils.load_img(image))[None]))[0]
    assert want[0] > 0.9
    status, out, err = run(capsys, "predict", "--model", model_path, image)
    assert status == 0, err
    assert out.strip() == f"{image}: airplane {want[0]:.3f}, automobile {want[1]:.3f}"


def test_logits_models_still_get_softmax(project, capsys, trained_run):
    model, model_path = tiny_classifier(project / "m", last="dense")
    assert not inference.outputs_probabilities(model)
    assert not inference.outputs_probabilities(
        inference.load_classifier(trained_run / "model.keras")[0]
    )
    frame = inference.predict_files(
        model, [red_image(project / "red.png")], ["airplane", "automobile"]
    )
    assert list(frame.columns) == ["path", "class_1", "probability_1", "class_2", "probability_2"]
    assert frame.loc[0, "probability_1"] + frame.loc[0, "probability_2"] == pytest.approx(1)
    assert frame.attrs["skipped"] == {}


def test_predict_files_and_write_predictions(project):
    model, _ = tiny_classifier(project / "m", classes=("a", "b", "c"))
    (project / "bad.jpg").write_bytes(b"")
    paths = [red_image(project / "red.png"), project / "bad.jpg"]
    with pytest.raises(data.BadImageError, match="bad.jpg"):
        inference.predict_files(model, paths, ["a", "b", "c"], top_k=2)
    frame = inference.predict_files(model, paths, ["a", "b", "c"], top_k=2, on_error="skip")
    assert len(frame) == 1 and frame.loc[0, "class_1"] == "a"
    assert frame.attrs["skipped"] == {str(project / "bad.jpg"): "it is empty (0 bytes)"}
    csv = inference.write_predictions(frame, project / "out" / "p.csv").read_text().splitlines()
    assert csv[0] == "path,class_1,probability_1,class_2,probability_2" and len(csv) == 2
    lines = inference.write_predictions(frame, project / "p.jsonl").read_text().splitlines()
    assert [t["class"] for t in json.loads(lines[0])["top"]] == ["a", frame.loc[0, "class_2"]]
    with pytest.raises(errors.InvalidInputError, match=".csv or .jsonl"):
        inference.write_predictions(frame, project / "p.txt")


def test_run_metadata_that_is_not_valid_json_is_named(project, capsys):
    _, model_path = tiny_classifier(project / "m")
    (project / "m" / "model.json").unlink()
    (project / "m" / "metadata.json").write_text('{"class_names": ["a", "b"],')
    image = red_image(project / "red.png")
    refused(
        capsys, "predict", "--model", model_path, image, says=["metadata.json", "not valid JSON"]
    )
    (project / "m" / "metadata.json").write_text('{"class_names": ["a", "b", "c"]}')
    refused(
        capsys,
        "predict",
        "--model",
        model_path,
        image,
        says=["metadata.json names 3 classes but model.keras outputs 2 scores"],
    )


def test_a_tflite_sidecar_must_fit_its_model(project, capsys):
    pytest.importorskip("ai_edge_litert")
    from mobilevit_utils import export

    model, _ = tiny_classifier(project / "m")
    path = export.export(model, project / "tflite", ("fp32",), ["airplane", "automobile"])["fp32"]
    sidecar = path.with_suffix(".json")
    good = json.loads(sidecar.read_text())
    assert good["output"].startswith("logits")
    image = red_image(project / "red.png")
    x, y = learnable_images(2, 2)
    tree = write_image_tree(project / "ds" / "test", x, y, ["airplane", "automobile"]).parent
    commands = {
        "predict": ["predict", "--model", path, image],
        "evaluate": ["evaluate", "--model", path, "--data-dir", tree, "--out", project / "r"],
    }
    for change, says in [
        ({"class_names": ["airplane", "automobile", "bird"]}, "names 3 classes but"),
        ({"class_names": ["airplane"]}, "names 1 classes but"),
        ({"input_shape": None}, "lacks input_shape"),
        ({"input_shape": [64, 64, 3]}, "gives input_shape [64, 64, 3] but"),
    ]:
        metadata = {**good, **change}
        if change.get("input_shape", 0) is None:
            del metadata["input_shape"]
        sidecar.write_text(json.dumps(metadata))
        for command in commands.values():
            err = refused(capsys, *command, says=[str(sidecar), says])
            assert "not a valid TFLite model" not in err
    sidecar.write_text("{")
    refused(capsys, *commands["predict"], says=[str(sidecar), "not valid JSON"])
    assert not (project / "r").exists()
    sidecar.write_text(json.dumps(good))
    status, out, err = run(capsys, *commands["evaluate"])
    assert status == 0, err


def test_a_tflite_file_ending_in_softmax_outputs_probabilities(project):
    pytest.importorskip("ai_edge_litert")
    from mobilevit_utils import export

    model, _ = tiny_classifier(project / "m", last="softmax")
    path = export.export(model, project / "tflite", ("fp32",), ["airplane", "automobile"])["fp32"]
    assert json.loads(path.with_suffix(".json").read_text())["output"].startswith("probabilities")
    runner, _ = inference.load_classifier(path)
    assert inference.outputs_probabilities(runner)
    image = np.asarray(keras.utils.load_img(red_image(project / "red.png")))[None]
    np.testing.assert_allclose(
        inference.predict_proba(runner, image),
        keras.ops.convert_to_numpy(model(image.astype("float32"))),
        atol=1e-5,
    )


# --------------------------------------------------------------------------------------------
# Image files that a plain decoder gets wrong


def spatial_classifier(folder, classes=("airplane", "automobile")):
    """A plain Keras model whose scores depend on where each pixel is (one dense layer over all
    of them), so that a photo on its side scores otherwise than upright; saved as
    folder/model.keras with its class names."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(len(classes))
    model = keras.Model(
        inputs, dense(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    )
    kernel = np.random.default_rng(0).normal(0, 0.05, (32 * 32 * 3, len(classes)))
    dense.set_weights([kernel.astype("float32"), np.zeros(len(classes), "float32")])
    model.save(folder / "model.keras")
    (folder / "model.json").write_text(json.dumps({"class_names": list(classes)}))
    return folder / "model.keras"


def awkward_images(folder):
    """{awkward file: its plain copy}, all 24 tall x 16 wide as shown: a 16-bit grey PNG and
    its 8-bit copy; a JPEG stored on its side (16 tall x 24 wide) with EXIF orientation 6 and
    an upright copy (its own pixels turned 90 degrees clockwise, as a PNG). Also
    folder/sideways.png, the JPEG's pixels as stored."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    grey = np.linspace(0, 255, 24 * 16).round().astype("uint8").reshape(24, 16)
    Image.fromarray(grey.astype("uint16") * 257).save(folder / "deep.png")  # 0-65535
    Image.fromarray(grey).save(folder / "grey.png")
    with Image.open(folder / "deep.png") as deep:
        assert deep.mode == "I;16"
    stored = np.zeros((16, 24, 3), "uint8")
    stored[..., 1] = np.linspace(0, 255, 24).round().astype("uint8")
    stored[:6, :6] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    Image.fromarray(stored).save(folder / "phone.jpg", exif=exif, quality=95)
    with Image.open(folder / "phone.jpg") as jpeg:
        sensor = np.asarray(jpeg.convert("RGB"))  # the pixels as stored, EXIF ignored
    Image.fromarray(np.ascontiguousarray(np.rot90(sensor, k=-1))).save(folder / "upright.png")
    Image.fromarray(sensor).save(folder / "sideways.png")
    return {folder / "deep.png": folder / "grey.png", folder / "phone.jpg": folder / "upright.png"}


def test_sixteen_bit_and_exif_rotated_images_read_as_their_plain_copies(project, capsys):
    """predict on a 16-bit PNG and on a phone photo with EXIF orientation 6 says what it says on
    their 8-bit and upright copies; and the data loading that training, evaluation and int8
    calibration go through (`load_dataset`, `load_split_folder`) decodes them to the same
    pixels as `read_image` does those copies."""
    model = spatial_classifier(project / "m")
    pairs = awkward_images(project / "images")
    sideways = project / "images" / "sideways.png"
    files = [*pairs, *pairs.values(), sideways]
    status, out, err = run(capsys, "predict", "--model", model, *files)
    assert status == 0, err
    said = dict(line.split(": ", 1) for line in out.splitlines())
    assert sorted(said) == sorted(map(str, files)), out
    for awkward, plain in pairs.items():
        assert said[str(awkward)] == said[str(plain)], out
    assert said[str(sideways)] != said[str(pairs[project / "images" / "phone.jpg"])], out

    tree = project / "ds"
    for awkward in pairs:
        (tree / "train" / awkward.stem).mkdir(parents=True)
        (tree / "train" / awkward.stem / awkward.name).write_bytes(awkward.read_bytes())
    for image_size in (None, (32, 32)):  # as stored, and fitted to a model's input
        dataset = data.load_dataset(tree, validation_split=0, image_size=image_size)
        x, y, names, _ = data.load_split_folder(tree / "train", image_size=image_size)
        assert names == dataset.class_names == ("deep", "phone")
        for label, plain in enumerate(pairs.values()):
            want = data.read_image(plain, image_size)
            assert want.shape == ((24, 16, 3) if image_size is None else (32, 32, 3))
            np.testing.assert_array_equal(dataset.x_train[dataset.y_train == label][0], want)
            np.testing.assert_array_equal(x[y == label][0], want)


# --------------------------------------------------------------------------------------------
# Evaluation and export


def test_f1_covers_the_classes_present_and_names_the_absent(project, capsys):
    names = ("a", "b", "c", "d")
    probabilities = np.eye(4)[[0, 0, 1, 1, 0]]
    report = evaluation.evaluate_predictions([0, 0, 1, 1, 1], probabilities, names)
    assert report.absent_classes == ("c", "d")
    # a: precision 2/3, recall 1 -> 0.8; b: precision 1, recall 2/3 -> 0.8
    assert report.macro_f1 == pytest.approx(0.8)
    assert report.metrics()["absent_classes"] == ["c", "d"]
    assert (
        "absent_classes" not in evaluation.evaluate_predictions([0, 1], np.eye(2), "ab").metrics()
    )

    _, model_path = tiny_classifier(project / "m", classes=("airplane", "automobile", "bird"))
    x, y = learnable_images(2, 2)
    tree = write_image_tree(project / "ds" / "test", x, y, ["airplane", "automobile"]).parent
    status, out, err = run(
        capsys, "evaluate", "--model", model_path, "--data-dir", tree, "--out", project / "r"
    )
    assert status == 0, err
    assert "1 of the model's 3 classes have no images here (bird)" in out

    # The report folder: every file evaluate wrote is one it knows (REPORT_FILES); a second
    # evaluate into it is refused without --overwrite, changing nothing; one into the data
    # is refused before anything is written.
    written = {path.name for path in (project / "r").iterdir()}
    assert written <= set(evaluation.REPORT_FILES) and "MODEL_CARD.md" in written
    stamps = {path.name: path.stat().st_mtime_ns for path in (project / "r").iterdir()}
    again = ["evaluate", "--model", model_path, "--data-dir", tree, "--out", project / "r"]
    refused(capsys, *again, says=["already holds metrics.json", "--overwrite"])
    assert stamps == {path.name: path.stat().st_mtime_ns for path in (project / "r").iterdir()}
    status, out, err = run(capsys, *again, "--overwrite")
    assert status == 0, err
    before = sorted(path.relative_to(tree) for path in tree.rglob("*"))
    refused(capsys, *again[:-1], tree / "report", says=["is inside --data-dir", "into the data"])
    assert sorted(path.relative_to(tree) for path in tree.rglob("*")) == before


def test_int8_export_with_one_calibration_image_per_class(project, capsys):
    pytest.importorskip("ai_edge_litert")
    _, model_path = tiny_classifier(project / "m", classes=("a", "b", "c"))
    write_image_tree(project / "calibration" / "train", random_images(3), [0, 1, 2], "abc")
    status, out, err = run(
        capsys,
        "export",
        "--model",
        model_path,
        "--quantization",
        "int8",
        "--calibration-data",
        project / "calibration",
        "--out",
        project / "tflite",
    )
    assert status == 0, err
    assert "validation_split" not in out + err and "int8" in out


def test_a_failed_parity_row_says_what_to_ship_instead():
    from mobilevit_utils.cli import export as export_command

    assert "don't ship it: ship fp16 or dynamic" in export_command.failed_parity_advice("int8")
    assert "conversion fault" in export_command.failed_parity_advice("fp32")
