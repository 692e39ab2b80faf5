import keras
import numpy as np
import pytest
from helpers import tiny_dataset

from mobilevit_utils import export, models

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def small_model(trained_run):
    # A trained model: an untrained one's logits are nearly tied, so quantisation noise would
    # flip its top-1 at random and the agreement check would measure nothing.
    return keras.saving.load_model(trained_run / "model.keras", safe_mode=True)


@pytest.fixture(scope="module")
def exported(small_model, tmp_path_factory):
    images = tiny_dataset(n_per_class=16).x_train
    out = tmp_path_factory.mktemp("tflite")
    paths = export.export(
        small_model,
        out,
        export.PRECISIONS,
        ["a", "b", "c"],
        calibration_images=images,
        num_calibration=16,
    )
    return paths, images


def test_every_precision_converts_and_runs(exported, small_model):
    paths, images = exported
    sizes = {p: path.stat().st_size for p, path in paths.items()}
    assert sizes["dynamic"] < sizes["fp16"] < sizes["fp32"]
    assert sizes["int8"] < 0.5 * sizes["fp32"]
    for path in paths.values():
        runner = export.TFLiteModel(path)
        logits = runner.predict(images[:3])
        assert logits.shape == (3, 3) and logits.dtype == np.float32
        result = export.parity(small_model, path, images[:8])
        assert result["ok"], result
        assert not any(op.startswith("Flex") for op in runner.op_names())


def test_fp32_parity(exported, small_model):
    paths, images = exported
    assert export.parity(small_model, paths["fp32"], images)["max_abs_diff"] <= 1e-4


def test_op_dtypes_show_what_computes_in_int8(exported):
    paths, _ = exported
    fp32 = export.op_dtypes(paths["fp32"])
    assert [op["op"] for op in fp32] == export.TFLiteModel(paths["fp32"]).op_names()
    assert all(set(op["outputs"]) == {"float32"} for op in fp32)
    int8 = export.op_dtypes(paths["int8"])
    convolutions = [op for op in int8 if op["op"] == "CONV_2D"]
    assert convolutions and all(op["outputs"] == ("int8",) for op in convolutions)


def test_int8_model_quantises_its_inputs(exported):
    paths, images = exported
    runner = export.TFLiteModel(paths["int8"])
    assert runner.input_details["dtype"] == np.int8 and runner.output_details["dtype"] == np.int8
    quantisation = runner.metadata["input_quantization"]
    # 0-255 pixels map onto the full int8 range: q = x / scale + zero_point.
    assert quantisation["zero_point"] == -128 and quantisation["scale"] == pytest.approx(
        1.0, rel=0.01
    )
    q = runner._quantise(np.array([[0.0, 128.0, 255.0]]))
    np.testing.assert_array_equal(q, [[-128, 0, 127]])
    # uint8 and float inputs give the same result.
    np.testing.assert_allclose(
        runner.predict(images[:2]), runner.predict(images[:2].astype("float32"))
    )


def test_metadata_round_trip(exported):
    paths, _ = exported
    meta = export.read_metadata(paths["int8"])
    assert meta["class_names"] == ["a", "b", "c"]
    assert (
        meta["input_name"] == "image"
        and meta["input_shape"] == [32, 32, 3]
        and meta["batch_size"] == 1
    )
    assert meta["precision"] == "int8" and meta["calibration_samples"] == 16
    assert export.read_metadata(paths["fp32"])["input_quantization"] is None
    export.write_metadata(paths["fp32"], {**export.read_metadata(paths["fp32"]), "note": "x"})
    assert export.TFLiteModel(paths["fp32"]).metadata["note"] == "x"


def test_interpreter_wrapper_rejects_bad_input(exported):
    runner = export.TFLiteModel(exported[0]["fp32"])
    with pytest.raises(
        ValueError, match=r"expects images of shape \(N, 32, 32, 3\), got \(2, 16, 16, 3\)"
    ):
        runner.predict(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        runner.predict(np.zeros((1, 32, 32, 3), dtype=object))
    with pytest.raises(FileNotFoundError):
        export.TFLiteModel("missing.tflite")


@keras.saving.register_keras_serializable(package="tests")
class SingularValues(keras.layers.Layer):
    def call(self, x):
        return keras.ops.linalg.svd(x)[1]


def test_model_needing_flex_ops_is_refused():
    inputs = keras.Input((4, 4))
    model = keras.Model(inputs, SingularValues()(inputs))
    with pytest.raises(export.FlexOpsError, match="Svd"):
        export.to_flatbuffer(model, "fp32")


def test_int8_without_calibration_images_is_a_clear_error(small_model):
    with pytest.raises(export.ExportError, match="calibration"):
        export.to_flatbuffer(small_model, "int8")


def test_cli_export_prints_a_table_with_accuracy(trained_run, tmp_path):
    import os
    import subprocess
    import sys

    from PIL import Image

    data = tiny_dataset(n_per_class=16)
    for split, (x, y) in {
        "train": (data.x_train, data.y_train),
        "test": (data.x_val, data.y_val),
    }.items():
        for i, (image, label) in enumerate(zip(x, y)):
            folder = tmp_path / "images" / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mobilevit_utils",
            "export",
            "--model",
            str(trained_run / "model.keras"),
            "--quantization",
            "int8",
            "--out",
            str(tmp_path / "out"),
            "--calibration-data",
            str(tmp_path / "images"),
            "--calibration-samples",
            "16",
            "--eval-data",
            str(tmp_path / "images"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("precision"))
    assert lines[header].split() == ["precision", "size", "KB", "parity", "accuracy"]
    row = lines[header + 1].split()
    assert row[0] == "int8" and row[2] == "ok," and 0.0 <= float(row[-1]) <= 1.0
    assert (tmp_path / "out" / f"{trained_run.name}_int8.json").exists()  # named after the run


def test_calibration_sample_draws_reproducibly_across_classes():
    labels = np.repeat(np.arange(10), 50)  # a class-sorted folder
    first = export.calibration_sample(labels, 40)
    assert len(first) == 40
    np.testing.assert_array_equal(first, export.calibration_sample(labels, 40))
    assert len(np.unique(first)) >= 8  # the first 40 of the folder would be one class
    assert len(export.calibration_sample(labels[:5], 40)) == 5


@pytest.mark.parametrize(
    "variant, size, precisions",
    [
        ("xxs_cifar_v3", 32, ("fp32", "fp16", "dynamic")),
        ("xxs_cifar_dynconv", 32, ("fp32", "int8")),
        ("v2_050_cifar", 32, ("fp32", "int8")),
        ("v2_050", 64, ("fp32",)),  # the ImageNet layout; int8 of its blocks: v2_050_cifar
    ],
)
def test_structural_variants_export_without_flex_ops(variant, size, precisions, tmp_path):
    """Dynamic convolution and separable attention convert to fp32 (exact) and int8 (integer
    input) with builtin ops only; v3-style blocks to fp32, fp16 and dynamic range; int8 is a
    clear refusal (the converter's int8 model of them aborts LiteRT)."""
    from mobilevit_utils import models

    model = models.build_mobilevit(
        variant, num_classes=10, input_shape=(size, size, 3), include_rescaling=True
    )
    images = np.random.default_rng(0).integers(0, 256, size=(8, size, size, 3)).astype("uint8")
    paths = export.export(model, tmp_path, precisions, list("abcdefghij"), images)
    for path in paths.values():
        runner = export.TFLiteModel(path)
        assert not any(op.startswith("Flex") for op in runner.op_names()), runner.op_names()
        assert runner.predict(images[:2]).shape == (2, 10)
    assert export.parity(model, paths["fp32"], images)["ok"]
    if "int8" in paths:
        assert export.TFLiteModel(paths["int8"]).input_details["dtype"] == np.int8
    elif variant.endswith("_v3"):
        with pytest.raises(export.ExportError, match="v3-style.*allocate_tensors"):
            export.to_flatbuffer(model, "int8", calibration_images=images)


def test_variants_table_command(tmp_path):
    """benchmarks/variants.py writes the CSV and Markdown table, int8 refusals included."""
    import csv
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks import variants

    variants.main(["--only", "xxs_cifar_v3", "--runs", "2", "--results-dir", str(tmp_path)])
    (row,) = csv.DictReader(open(tmp_path / "variants.csv"))
    assert row["variant"] == "xxs_cifar_v3" and row["tflite_int8_ms"] == "refused"
    assert int(row["params"]) == 639_034 and float(row["tflite_fp32_ms"]) > 0
    assert "| xxs_cifar_v3 |" in (tmp_path / "variants.md").read_text()


def test_cli_predict_reads_keras_and_tflite_alike(exported, trained_run, tmp_path, capsys):
    """`predict` on a folder: the fp32 TFLite model ranks every image as the .keras model does."""
    import json

    from helpers import write_image_tree
    from PIL import Image

    from mobilevit_utils import cli

    paths, images = exported
    write_image_tree(tmp_path / "photos", images[:6], [0, 1, 2, 0, 1, 2], ["a", "b", "c"])
    Image.fromarray(images[0]).save(tmp_path / "photos" / "top.png")
    results = {}
    for name, model in (("keras", trained_run / "model.keras"), ("tflite", paths["fp32"])):
        out = tmp_path / f"{name}.jsonl"
        assert (
            cli.main(
                ["predict", "--model", str(model), "--output", str(out), str(tmp_path / "photos")]
            )
            == 0
        )
        results[name] = [json.loads(line) for line in out.read_text().splitlines()]
    capsys.readouterr()
    assert len(results["keras"]) == 7
    # The same ranking: the run names its classes class0..., the exported sidecar a, b, c.
    names = {"keras": ["class0", "class1", "class2"], "tflite": ["a", "b", "c"]}
    for k, t in zip(results["keras"], results["tflite"]):
        assert k["path"] == t["path"]
        assert [names["keras"].index(c["class"]) for c in k["top"]] == [
            names["tflite"].index(c["class"]) for c in t["top"]
        ]
        for kc, tc in zip(k["top"], t["top"]):
            assert abs(kc["probability"] - tc["probability"]) < 1e-3


def test_int8_input_range_covers_every_pixel_value_whatever_the_calibration_photos(tmp_path):
    """Calibration photos whose brightest pixel is 200 must not fit the int8 input to 0-200:
    a 255 pixel would overflow int8 in an app and be clipped inside the model."""
    model = models.build_mobilevit("xxs_cifar", num_classes=3)
    dim = np.random.default_rng(0).integers(0, 200, size=(8, 32, 32, 3)).astype("uint8")
    path = export.export(model, tmp_path, precisions=("int8",), calibration_images=dim)["int8"]
    quantization = export.read_metadata(path)["input_quantization"]
    scale, zero_point = quantization["scale"], quantization["zero_point"]
    assert (-128 - zero_point) * scale <= 0.5 and (127 - zero_point) * scale >= 254.5
    assert quantization["formula"].startswith("q = clip(")
