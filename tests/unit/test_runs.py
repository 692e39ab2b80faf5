"""Run files: `RunMetadata` is metadata.json's schema and its only reader and writer, the
committed runs read back unchanged, and every run file is written atomically."""

import dataclasses
import json
import os
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from mobilevit_utils import run_files, training
from mobilevit_utils.errors import SidecarError
from mobilevit_utils.run_files import RunMetadata

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(
    [*ROOT.glob("checkpoints/*/metadata.json"), *ROOT.glob("benchmarks/results/**/metadata.json")]
)


def test_the_committed_runs_are_found():
    assert len([p for p in COMMITTED if p.parts[-3] == "checkpoints"]) >= 3


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_committed_metadata_reads_and_writes_back_unchanged(path, tmp_path):
    text = path.read_text()
    metadata = RunMetadata.read(path.parent)
    assert metadata.to_dict() == json.loads(text) and not metadata.extra
    assert list(metadata.to_dict()) == list(json.loads(text))  # the writer's key order
    metadata.write(tmp_path)
    assert (tmp_path / "metadata.json").read_text() == text  # byte for byte
    assert RunMetadata.read(tmp_path) == metadata


def test_a_missing_key_takes_its_one_default():
    """Older or hand-written files, a TFLite sidecar, Apple's few keys: what is missing reads
    as the schema's default, which for the split is TrainConfig's."""
    metadata = RunMetadata.from_dict({"class_names": ["a", "b"], "input_shape": [32, 32, 3]})
    defaults = training.TrainConfig()
    assert (metadata.seed, metadata.validation_split) == (defaults.seed, defaults.validation_split)
    assert metadata.seed == 42 and metadata.validation_split == 0.1 and not metadata.final_fit
    assert metadata.max_per_class is None and metadata.best_val_accuracy is None
    assert metadata.environment == {} and metadata.image_size == (32, 32)
    assert RunMetadata.from_dict({"validation_split": 0.0}).final_fit
    assert RunMetadata.from_dict(None) == RunMetadata()
    assert RunMetadata.from_dict(metadata) is metadata


def test_unknown_keys_are_kept_and_fine_tuning_keys_written_only_for_fine_tuned_runs():
    sidecar = {"class_names": ["a"], "precision": "int8", "ops": ["CONV_2D"]}
    metadata = RunMetadata.from_dict(sidecar)
    assert metadata.extra == {"precision": "int8", "ops": ["CONV_2D"]}
    assert metadata.to_dict()["precision"] == "int8"
    assert "init_from" not in metadata.to_dict() and "head_epochs" not in metadata.to_dict()
    tuned = dataclasses.replace(metadata, init_from="mobilevit_xxs_cifar10", head_epochs=3)
    assert tuned.to_dict()["head_epochs"] == 3 and tuned.to_dict()["source_preprocessing"] is None


def test_a_damaged_metadata_file_is_a_one_line_error(tmp_path):
    for text, says in [("{not json", "not valid JSON"), ("[1, 2]", "holds a JSON list")]:
        (tmp_path / "metadata.json").write_text(text)
        with pytest.raises(SidecarError, match=says) as error:
            RunMetadata.read(tmp_path)
        assert "metadata.json" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError):
        RunMetadata.read(tmp_path / "none")


def test_writes_are_atomic(tmp_path, monkeypatch):
    """The old file stays whole when a write fails before its rename; no temporary is left."""
    path = tmp_path / "config.json"
    run_files.write_json(path, {"epochs": 1})
    assert json.loads(path.read_text()) == {"epochs": 1}
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run_files.write_json(path, {"epochs": 2})
    assert json.loads(path.read_text()) == {"epochs": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Run metadata read anywhere but run_files.py: `metadata.get(`, `meta[`, `x_metadata.get(`,
# `result["metadata"][...]`, or metadata.json opened by hand. `runner.metadata` (a TFLite
# model's sidecar), `field.metadata` (a dataclass field's) and `cell["metadata"].get(` (a
# notebook cell's) are other things.
METADATA_READ = re.compile(
    r"(?<![\w.])(metadata|meta|\w+_metadata)\s*(\.get\(|\[)"
    r"|\[\"metadata\"\]\s*\["
    r"|metadata\.json\W*\)?\s*\.(read_text|open)\(|open\([^)]*metadata\.json"
)
SOURCES = sorted(
    path
    for folder in ("mobilevit_utils", "tools", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
    if path.name != "run_files.py"
)


def test_run_metadata_is_read_only_through_run_metadata():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if METADATA_READ.search(line.split("#")[0]) and not line.lstrip().startswith(('"', "`"))
    ]
    assert not found, "read run metadata through RunMetadata:\n" + "\n".join(found)


def test_the_pattern_finds_what_it_should():
    for line in [
        'metadata.get("validation_split", 0.1)',
        'x = meta["input_shape"]',
        'source_metadata.get("preprocessing")',
        'result["metadata"]["best_val_accuracy"]',
        'json.loads((run / "metadata.json").read_text())',
    ]:
        assert METADATA_READ.search(line), line
    for line in [
        'runner.metadata.get("precision")',
        'field.metadata.get("help")',
        'cell["metadata"].get("execution")',
    ]:
        assert not METADATA_READ.search(line), line


def _history_rows(callback, epochs, first=0):
    callback.on_train_begin()
    for epoch, logs in enumerate(epochs, first):
        callback.on_epoch_end(epoch, dict(logs))
    callback.on_train_end()


@pytest.mark.parametrize("validating", [True, False])
def test_atomic_csv_logger_writes_what_keras_csv_logger_wrote(tmp_path, validating):
    """The same columns and values as keras.callbacks.CSVLogger (without validation: NA in
    `val_` copies of every column), so old and new history.csv files read the same."""
    epochs = [
        {"loss": 1.5, "accuracy": 0.25, "epoch_time_s": 2.0},
        {"loss": 1.25, "accuracy": 0.5, "epoch_time_s": 2.5},
    ]
    if validating:
        epochs = [{**logs, "val_loss": 1.75, "val_accuracy": 0.375} for logs in epochs]
    (tmp_path / "keras").mkdir()
    (tmp_path / "ours").mkdir()
    _history_rows(keras.callbacks.CSVLogger(str(tmp_path / "keras" / "history.csv")), epochs)
    _history_rows(training.CSVLogger(tmp_path / "ours" / "history.csv"), epochs)
    theirs = (tmp_path / "keras" / "history.csv").read_text().replace("\r\n", "\n")
    assert (tmp_path / "ours" / "history.csv").read_text() == theirs
    assert training.read_history(tmp_path / "ours") == training.read_history(tmp_path / "keras")


def test_atomic_csv_logger_appends_to_an_older_runs_file(tmp_path):
    """A run resumed from a history.csv that CSVLogger began (its \\r\\n lines, its columns),
    and one killed before its first row (an empty file)."""
    old = tmp_path / "old" / "history.csv"
    old.parent.mkdir()
    old.write_text("epoch,accuracy,loss\r\n0,0.25,1.5\r\n")
    _history_rows(training.CSVLogger(old), [{"accuracy": 0.5, "loss": 1.0, "more": 3.0}], 1)
    assert training.read_history(old.parent) == [
        {"epoch": 0, "accuracy": 0.25, "loss": 1.5},
        {"epoch": 1, "accuracy": 0.5, "loss": 1.0},
    ]
    empty = tmp_path / "empty" / "history.csv"
    empty.parent.mkdir()
    empty.write_text("")
    _history_rows(training.CSVLogger(empty), [{"loss": np.float32(1.0)}])
    assert training.read_history(empty.parent) == [{"epoch": 0.0, "loss": 1.0}]


def test_a_run_writes_its_files_through_run_metadata(trained_run):
    metadata = RunMetadata.read(trained_run)
    model, loaded = training.load_run(trained_run, compile=False)
    assert loaded == metadata.to_dict() and metadata.class_names == ["class0", "class1", "class2"]
    assert metadata.input_shape == [32, 32, 3] and metadata.epochs_completed == 3
    assert metadata.preset == "quick" and metadata.init_from is None
    hidden = [p.name for p in trained_run.iterdir() if p.name.startswith(".")]
    assert hidden == [training.runs.MARKER]  # the run's marker, and no temporaries
