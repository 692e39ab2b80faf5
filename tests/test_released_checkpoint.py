"""The checkpoint released in checkpoints/mobilevit_xxs_cifar10/ (see README, "Results")."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import mobilevit_utils  # noqa: F401  (registers the layers)
from mobilevit_utils import models, training

RELEASE = Path(__file__).resolve().parents[1].joinpath(*training.RELEASED_RUN)
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def release():
    metadata = json.loads((RELEASE / "metadata.json").read_text())
    results = json.loads((RELEASE / "results.json").read_text())
    return metadata, results


def test_loads_safely_and_matches_its_metadata(release):
    metadata, results = release
    model = keras.saving.load_model(RELEASE / "model.keras", safe_mode=True)
    assert metadata["class_names"] == CIFAR10
    assert tuple(model.input_shape[1:]) == tuple(metadata["input_shape"]) == (32, 32, 3)
    assert models.trainable_params(model) == results["trainable_parameters"]
    logits = keras.ops.convert_to_numpy(model(np.zeros((2, 32, 32, 3), "float32")))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_results_agree_with_the_files_they_come_from(release):
    metadata, results = release
    report = json.loads((RELEASE / "report" / "metrics.json").read_text())
    assert results["evaluation"]["accuracy"] == report["accuracy"]
    assert results["evaluation"]["macro_f1"] == report["macro_f1"]
    history = training.read_history(RELEASE)
    assert len(history) == metadata["epochs_completed"] == results["training"]["epochs"]
    best = max(row["val_accuracy"] for row in history)
    assert metadata["best_val_accuracy"] == pytest.approx(best)
    assert metadata["preset"] == "cpu" and metadata["environment"]["cpu_count"] == 2
    readme = (RELEASE.parents[1] / "README.md").read_text()
    assert (RELEASE / "results.md").read_text() in readme


def test_notebooks_fall_back_to_the_release(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path))  # no notebook 03 run there
    monkeypatch.chdir(RELEASE.parents[1])
    assert training.find_run().resolve() == RELEASE.resolve()
