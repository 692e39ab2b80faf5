"""The released checkpoint, `training.RELEASED_PRESET` (checkpoints/; see README, "Results")."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import mobilevit_utils  # noqa: F401  (registers the layers)
from mobilevit_utils import models, presets, training

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / presets.PRESETS[training.RELEASED_PRESET].checkpoint
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


def test_the_cpu_preset_is_the_released_recipe():
    """`train --preset cpu` repeats the release: its config.json is the preset, field for field
    (the name of the run folder aside, which is not part of the recipe)."""
    released = json.loads((RELEASE / "config.json").read_text())
    preset = training.RECIPES["cpu"].to_dict()
    assert {k: v for k, v in released.items() if k in preset} == preset
    assert set(preset) <= set(released)


def test_notebooks_fall_back_to_the_release(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path))  # no notebook 03 run there
    monkeypatch.chdir(RELEASE.parents[1])
    assert training.find_run().resolve() == RELEASE.resolve()


def test_preset_api_returns_the_release(release, monkeypatch):
    metadata, _ = release
    monkeypatch.chdir(RELEASE.parents[1])
    assert training.RELEASED_PRESET in presets.list_presets()
    assert "mobilevit_xxs_cifar10" in presets.list_presets()  # the previous release
    assert "apple/mobilevit-xx-small" in presets.list_presets()
    model = presets.from_preset(training.RELEASED_PRESET)
    stored = keras.saving.load_model(RELEASE / "model.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(stored(x))
    )
    info = presets.preset_metadata(training.RELEASED_PRESET)
    assert info["class_names"] == metadata["class_names"]
    assert info["preprocessing"]["channel_order"] == "RGB" and info["preprocessing"]["in_model"]
    with pytest.raises(ValueError, match="expected one of"):
        presets.from_preset("mobilevit_tiny")


def test_committed_results_hold_no_machine_paths():
    root = RELEASE.parents[1]
    files = [
        *RELEASE.glob("*.json"),
        *RELEASE.glob("*.md"),
        *(root / "benchmarks" / "results").rglob("*.json"),
    ]
    for file in files:
        text = file.read_text()
        for marker in ('"/home/', '"/work/', '"/tmp/', '"/root/', '"/Users/', '"/mnt/'):
            assert marker not in text, f"{file.relative_to(root)} holds a machine path ({marker})"
