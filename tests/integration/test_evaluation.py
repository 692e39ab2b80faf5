import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import random_images, tiny_dataset, write_image_tree

from mobilevit_utils import evaluation, export, inference, models

ROOT = Path(__file__).resolve().parents[2]


def one_hot_probs(pred, num_classes, confidence=0.9):
    probs = np.full((len(pred), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_metrics_match_hand_computed_case():
    # 3 classes; true: 0 0 1 1 2 2; predicted: 0 1 1 1 2 0
    y_true = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    report = evaluation.evaluate_predictions(y_true, one_hot_probs(pred, 3), ["a", "b", "c"])
    assert report.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(report.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # class a: precision 1/2, recall 1/2; b: precision 2/3, recall 1; c: precision 1, recall 1/2
    np.testing.assert_allclose(report.per_class["precision"], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(report.per_class["recall"], [0.5, 1.0, 0.5])
    f1 = [0.5, 0.8, 2 / 3]
    np.testing.assert_allclose(report.per_class["f1"], f1)
    assert report.macro_f1 == pytest.approx(np.mean(f1))
    assert report.weighted_f1 == pytest.approx(np.mean(f1))  # equal supports
    assert report.per_class["support"].tolist() == [2, 2, 2]
    # Every prediction has confidence 0.9 and 4/6 are right: ECE = |0.9 - 2/3|.
    assert report.expected_calibration_error == pytest.approx(0.9 - 4 / 6)
    pairs = evaluation.confused_pairs(report)
    assert len(pairs) == 2 and set(pairs["count"]) == {1}
    assert list(evaluation.confident_mistakes(report)) == [1, 5]


def test_reliability_figure_shows_how_many_images_each_bin_holds():
    import matplotlib.pyplot as plt

    from mobilevit_utils import plots

    y_true = np.arange(20) % 4
    probs = np.full((20, 4), 0.1)
    probs[np.arange(20), y_true] = 0.7  # every prediction right, at confidence 0.7
    report = evaluation.evaluate_predictions(y_true, probs, list("abcd"))
    fig = plots.reliability_figure(report.reliability, report.expected_calibration_error)
    shares = [bar.get_height() for bar in fig.axes[1].patches]
    assert shares == pytest.approx([100.0])  # one bin holds them all
    plt.close(fig)


def test_top5_accuracy():
    y_true = np.array([0, 1])
    probs = np.zeros((2, 7))
    probs[0] = np.linspace(0.2, 0.1, 7)  # class 0 ranked first
    probs[1, [6, 5, 4, 3, 2, 1]] = [0.3, 0.2, 0.15, 0.14, 0.13, 0.08]  # class 1 ranked sixth
    report = evaluation.evaluate_predictions(
        y_true, probs / probs.sum(1, keepdims=True), list("abcdefg")
    )
    assert report.top5_accuracy == 0.5


def test_report_files(tmp_path):
    y_true = np.arange(20) % 4
    pred = (y_true + (np.arange(20) % 5 == 0)) % 4
    report = evaluation.evaluate_predictions(y_true, one_hot_probs(pred, 4), list("abcd"))
    images = np.zeros((20, 8, 8, 3), np.uint8)
    written = evaluation.write_report(report, tmp_path, images=images)
    # Every file evaluation.REPORT_FILES names but the model card (evaluate's CLI writes it),
    # and nothing else: `evaluate --out` guards exactly these against being overwritten.
    expected = set(evaluation.REPORT_FILES) - {"MODEL_CARD.md"}
    assert {path.name for path in tmp_path.iterdir()} == expected
    for name in expected:
        assert (tmp_path / name).stat().st_size > 0, name
    assert set(written) == {
        "confusion_matrix",
        "confusion_matrix_normalized",
        "reliability",
        "misclassified",
    }
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(report.accuracy) and metrics["num_images"] == 20


def test_keras_and_tflite_evaluations_agree(trained_run, tmp_path):
    model, metadata = evaluation.load_classifier(trained_run / "model.keras")
    data = tiny_dataset(n_per_class=12)
    paths = export.export(model, tmp_path, ("fp32",), metadata["class_names"])
    tflite, tflite_meta = evaluation.load_classifier(paths["fp32"])
    assert tflite_meta["class_names"] == metadata["class_names"]
    keras_report = evaluation.evaluate(
        model, data.x_val, data.y_val, data.class_names, batch_size=4
    )
    tflite_report = evaluation.evaluate(
        tflite, data.x_val, data.y_val, data.class_names, batch_size=4
    )
    np.testing.assert_allclose(tflite_report.probabilities, keras_report.probabilities, atol=1e-5)
    assert tflite_report.accuracy == keras_report.accuracy


def test_flip_tta_averages_an_image_and_its_mirror():
    # Freshly initialised: its outputs depend on the image far more than a barely trained model's.
    model = models.build_mobilevit("xxs_cifar", num_classes=3, input_shape=(32, 32, 3))
    images = random_images(6, seed=3).astype("float32")
    mirrored = images[:, :, ::-1]
    tta = evaluation.predict_logits(model, images, batch_size=4, flip=True)
    plain = evaluation.predict_logits(model, images, batch_size=4)
    np.testing.assert_allclose(
        tta, (plain + evaluation.predict_logits(model, mirrored, 4)) / 2, atol=1e-5
    )
    # An image and its mirror get the same prediction, which a single pass does not guarantee.
    np.testing.assert_allclose(
        evaluation.predict_logits(model, mirrored, 4, flip=True), tta, atol=1e-5
    )
    assert not np.allclose(plain, tta, atol=1e-5)


def test_shift_tta_averages_one_pixel_moves_with_reflected_edges():
    images = np.arange(2 * 4 * 4 * 1, dtype="float32").reshape(2, 4, 4, 1)
    down = inference.shifted(images, 1, 0)
    np.testing.assert_array_equal(down[:, 1:], images[:, :-1])  # moved one row down
    np.testing.assert_array_equal(down[:, 0], images[:, 1])  # the new top row reflects row 1
    np.testing.assert_array_equal(inference.shifted(images, 0, -1)[:, :, :-1], images[:, :, 1:])
    model = models.build_mobilevit("xxs_cifar", num_classes=3, input_shape=(32, 32, 3))
    x = random_images(4, seed=5).astype("float32")
    views = [inference.shifted(x, dy, dx) for dy, dx in inference.SHIFTS]
    want = sum(evaluation.predict_logits(model, v, 4, flip=True) for v in views) / 5
    got = evaluation.predict_logits(model, x, 4, flip=True, shift=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


class _CountingInterpreterModel:
    """Stands in for a TFLiteModel (it has an `interpreter`) and counts forward passes."""

    interpreter = None

    def __init__(self):
        self.images_seen = 0

    def predict(self, batch):
        self.images_seen += len(batch)
        return np.zeros((len(batch), 3), "float32")


@pytest.mark.parametrize(
    "flip, shift", [(False, False), (True, False), (False, True), (True, True)]
)
def test_tta_views_counts_the_forward_passes_predict_logits_makes(flip, shift):
    model = _CountingInterpreterModel()
    inference.predict_logits(model, random_images(3, seed=2), batch_size=2, flip=flip, shift=shift)
    assert model.images_seen == 3 * inference.tta_views(flip=flip, shift=shift)


def _write_split(root, names, per_class=3):
    labels = np.repeat(np.arange(len(names)), per_class)
    write_image_tree(root, random_images(len(labels), seed=1), labels, names)


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "mobilevit_utils", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**os.environ},
    )


def test_cli_evaluate_predict_and_class_name_errors(trained_run, tmp_path, capsys):
    from mobilevit_utils import cli

    _write_split(tmp_path / "data" / "test", ["class0", "class1", "class2"])
    # One command as its own process (`python -m mobilevit_utils`); the others in this process,
    # through the same entry point and exit statuses, without a TensorFlow start each.
    result = _cli(
        "evaluate",
        "--model",
        str(trained_run / "model.keras"),
        "--data-dir",
        str(tmp_path / "data"),
        "--split",
        "test",
        "--out",
        str(tmp_path / "report"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("accuracy=") for line in lines)
    assert any(line.startswith("macro_f1=") for line in lines)
    assert (tmp_path / "report" / "confusion_matrix.png").exists()

    def cli_main(*args):
        capsys.readouterr()
        status = cli.main(list(args))
        return status, *capsys.readouterr()

    status, out, err = cli_main(
        "evaluate",
        "--model",
        str(trained_run / "model.keras"),
        "--data-dir",
        str(tmp_path / "data"),
        "--flip-tta",
        "--shift-tta",
        "--out",
        str(tmp_path / "report_tta"),
    )
    assert status == 0 and "(flip + shift TTA)" in out, err[-2000:]

    _write_split(tmp_path / "other" / "test", ["class0", "zebra"])
    status, out, err = cli_main(
        "evaluate",
        "--model",
        str(trained_run / "model.keras"),
        "--data-dir",
        str(tmp_path / "other"),
        "--out",
        str(tmp_path / "r2"),
    )
    assert status == 2 and "zebra" in err and "Traceback" not in err

    image = next((tmp_path / "data" / "test" / "class1").iterdir())
    status, out, err = cli_main(
        "predict", "--model", str(trained_run / "model.keras"), "--top-k", "2", str(image)
    )
    assert status == 0, err[-2000:]
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"{image}: ")
    assert line[len(f"{image}: ") :].count("class") == 2


def test_training_recipe_reads_the_run_config_else_the_named_preset(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"label_smoothing": 0.2}))
    assert evaluation.training_recipe(tmp_path, {"preset": "cpu"})["label_smoothing"] == 0.2
    bare = tmp_path / "downloaded"  # a released checkpoint fetched without its config.json
    bare.mkdir()
    from mobilevit_utils import training

    cpu = evaluation.training_recipe(bare, {"preset": "cpu"})
    assert cpu["label_smoothing"] == training.RECIPES["cpu"].label_smoothing
    assert evaluation.training_recipe(bare, {"preset": "nonesuch"}) == {}
    assert evaluation.training_recipe(bare) == {}
