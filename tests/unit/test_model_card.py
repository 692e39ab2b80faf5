"""MODEL_CARD.md: what a run's card says, from its metadata and evaluation."""

import json
from pathlib import Path

import pytest

from mobilevit_utils import model_card

RELEASE = Path(__file__).resolve().parents[2] / "checkpoints" / "mobilevit_v2_050_cifar10_heldout"


def test_the_card_states_data_contract_scores_limits_and_command(tmp_path):
    metadata = json.loads((RELEASE / "metadata.json").read_text())
    evaluation = json.loads((RELEASE / "results.json").read_text())["evaluation"]
    text = model_card.render(
        metadata,
        evaluation=evaluation,
        confused_pairs=[("cat", "dog", 98), ("dog", "cat", 71)],
        command="mobilevit train --preset cpu --out runs/x",
    )
    for heading in ("Intended use", "Training data", "Scores", "Limitations", "How it was made"):
        assert f"## {heading}" in text
    assert "airplane, automobile" in text and "32x32x3" in text
    assert f"{100 * evaluation['accuracy']:.2f} %" in text and "5,000 images" in text
    assert "CIFAR-10's world" in text and "cat taken for dog (98)" in text
    assert "mobilevit train --preset cpu --out runs/x" in text
    path = model_card.write(tmp_path, text)
    assert path.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["MODEL_CARD.md"]


@pytest.mark.parametrize("n, width", [(16, 30), (5000, 2)])
def test_the_interval_says_how_little_a_small_validation_set_tells(n, width):
    low, high = model_card.accuracy_interval(0.75, n)
    assert low < 0.75 < high
    assert (high - low) * 100 == pytest.approx(width, abs=width * 0.5)


def test_an_unevaluated_run_says_how_to_score_it():
    metadata = {"class_names": ["a", "b"], "input_shape": [224, 224, 3], "train_images": 40}
    text = model_card.render(metadata)
    assert "mobilevit evaluate" in text and "CIFAR-10's world" not in text
    assert model_card.essentials(metadata)["limitations"].endswith("224x224")


def test_metrics_of_five_classes_or_fewer_are_valid_json():
    """Top-5 is undefined with five classes or fewer: null in metrics.json, never NaN."""
    import numpy as np

    from mobilevit_utils import evaluation

    y = np.array([0, 1, 2, 0])
    probabilities = np.eye(3)[[0, 1, 1, 0]] * 0.9 + 0.1 / 3
    report = evaluation.evaluate_predictions(y, probabilities, ["a", "b", "c"])
    text = json.dumps(report.metrics(), allow_nan=False)  # raises on NaN
    assert json.loads(text)["top5_accuracy"] is None
