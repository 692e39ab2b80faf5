"""The released checkpoint, `training.RELEASED_PRESET` (checkpoints/; see README, "Results")."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import learnable_images, write_image_tree

import mobilevit_utils  # noqa: F401  (registers the layers)
from mobilevit_utils import models, presets, training

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / presets.PRESETS[training.RELEASED_PRESET].checkpoint
# A final fit has no held-out images: its twin (same recipe, validation split) holds the scores.
TWIN_PRESET = presets.PRESETS[training.RELEASED_PRESET].twin
SCORED = ROOT / presets.PRESETS[TWIN_PRESET].checkpoint if TWIN_PRESET else RELEASE
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
    assert results["training"]["wall_time_s"] == pytest.approx(
        sum(row["epoch_time_s"] for row in history), abs=1
    )
    scored = json.loads((SCORED / "metadata.json").read_text())
    best = max(row["val_accuracy"] for row in training.read_history(SCORED))
    assert scored["best_val_accuracy"] == pytest.approx(best)
    assert metadata["preset"] == "cpu" and metadata["environment"]["cpu_count"] == 2
    readme = (RELEASE.parents[1] / "README.md").read_text()
    assert (RELEASE / "results.md").read_text() in readme


def test_the_cpu_preset_is_the_released_recipe():
    """`train --preset cpu` repeats the scored run: its config.json is the preset, field for
    field; the release is the same recipe with `--validation-split 0`."""
    scored = json.loads((SCORED / "config.json").read_text())
    preset = training.RECIPES["cpu"].to_dict()
    defaults = training.TrainConfig().to_dict()
    # A field added since the run was recorded: it ran with the field's default.
    assert {k: scored.get(k, defaults[k]) for k in preset} == preset
    released = json.loads((RELEASE / "config.json").read_text())
    if TWIN_PRESET:
        assert released == {**scored, "validation_split": 0.0}


@pytest.mark.skipif(not TWIN_PRESET, reason="the release is not a final fit")
def test_a_final_fit_release_reports_its_twins_scores(release):
    metadata, results = release
    twin = json.loads((SCORED / "results.json").read_text())
    assert results["scored_by_twin"] == SCORED.relative_to(ROOT).as_posix()
    for key in ("evaluation", "evaluation_flip_tta", "evaluation_flip_shift_tta"):
        assert results[key]["accuracy"] == twin[key]["accuracy"], key
    assert metadata["validation_split"] == 0 and metadata.get("best_val_accuracy") is None
    assert metadata["train_images"] == twin["training"]["train_images"] + 5_000 == 50_000
    readme = (ROOT / "README.md").read_text()
    assert "all 50,000 training images" in readme


def test_notebooks_fall_back_to_the_release(tmp_path, monkeypatch):
    """Where the data has a test split (CIFAR-10's download), the release itself is evaluated;
    offline, without one, the images its twin held out are the only unseen ones."""
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path))  # no notebook 03 run there
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("MOBILEVIT_DATA_DIR", raising=False)
    assert training.find_run().resolve() == RELEASE.resolve()
    offline = write_image_tree(tmp_path / "offline" / "train", *learnable_images(2), CIFAR10[:3])
    assert training.find_run(data_dir=offline.parent).resolve() == SCORED.resolve()


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


@pytest.mark.skipif(TWIN_PRESET is None, reason="the release is scored on its own split")
def test_the_twin_preset_loads_and_carries_the_validation_score(monkeypatch):
    """The twin is a preset of its own: the model that holds the release's held-out score."""
    monkeypatch.chdir(RELEASE.parents[1])
    model = presets.from_preset(TWIN_PRESET)
    assert model.output_shape[-1] == len(CIFAR10)
    info = presets.preset_metadata(TWIN_PRESET)
    assert info["class_names"] == CIFAR10 and info["validation_split"] > 0
    stored = json.loads((SCORED / "metadata.json").read_text())
    assert info["best_val_accuracy"] == pytest.approx(stored["best_val_accuracy"])
    assert info["best_val_accuracy"] > 0.5


def test_committed_results_hold_no_machine_paths():
    root = RELEASE.parents[1]
    files = [
        *RELEASE.glob("*.json"),
        *RELEASE.glob("*.md"),
        *SCORED.glob("*.json"),
        *SCORED.glob("*.md"),
        *(root / "benchmarks" / "results").rglob("*.json"),
    ]
    for file in files:
        text = file.read_text()
        for marker in ('"/home/', '"/work/', '"/tmp/', '"/root/', '"/Users/', '"/mnt/'):
            assert marker not in text, f"{file.relative_to(root)} holds a machine path ({marker})"
