"""Run folders: created, refused, resumed or finished (`prepare_run_dir`, `run_finished`), and
read back (`load_run`, `read_history`, `fit_seconds`). What a folder holds::

    RUN_DIR/model.keras        best checkpoint (highest validation accuracy)
    RUN_DIR/config.json        the resolved TrainConfig
    RUN_DIR/environment.json   versions, backend, devices
    RUN_DIR/history.csv        one row per epoch (appended across resumes)
    RUN_DIR/metadata.json      `RunMetadata`: class names, preprocessing, wall time, best epoch
    RUN_DIR/backup/            BackupAndRestore state; an interrupted run resumes from here
    RUN_DIR/head/              a fine-tuning run's first phase (the new head alone), a run itself
    RUN_DIR/logs/              TensorBoard logs (when TensorFlow is installed)

Every file but the checkpoint and the backup is written atomically (`run_files.write_atomic`).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import keras

from mobilevit_utils import models
from mobilevit_utils.run_files import RunMetadata, atomic_path

CHECKPOINT_FILE = "model.keras"
CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"
HISTORY_FILE = "history.csv"
HEAD_DIR = "head"


class RunExistsError(FileExistsError):
    pass


def run_finished(run_dir):
    """True once `train` has written the run's metadata and removed its resume state. A run
    stopped before its first epoch ended has a history.csv but neither, and starts again."""
    run_dir = Path(run_dir)
    return RunMetadata.exists(run_dir) and not (run_dir / "backup").exists()


def prepare_run_dir(run_dir, resume=False, overwrite=False):
    """Create `run_dir`. An existing run is continued (`resume`), replaced (`overwrite`), or
    refused so that nothing is lost by accident."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir} is a file; the run needs a folder: choose another path.")
    existing = run_dir.exists() and any(run_dir.iterdir())
    if resume and run_finished(run_dir):
        raise RunExistsError(
            f"The run in {run_dir} has finished (its resume state is removed on completion); "
            "start a new run in another folder."
        )
    if existing and overwrite and not resume:
        shutil.rmtree(run_dir)
    elif existing and not resume:
        raise RunExistsError(
            f"{run_dir} already holds a run; continue it with --resume (resume=True), replace "
            "it with --overwrite (overwrite=True), or choose another output folder."
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise PermissionError(
            f"Cannot write to {run_dir}: {error.strerror}; choose another output folder."
        ) from None
    return run_dir


def fit_seconds(history):
    """`fit`'s time from a history: every epoch's `epoch_time_s` (validation included) summed,
    so a run resumed across sessions counts them all; None where an epoch lacks the column."""
    times = [row.get("epoch_time_s") for row in history]
    return sum(float(t) for t in times) if times and all(times) else None


def read_history(run_dir):
    """history.csv as a list of dicts with float values (CSVLogger's format)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        # "NA" in the val_ columns of a run without validation.
        return [
            {k: float(v) for k, v in row.items() if v not in ("", "NA")}
            for row in csv.DictReader(f)
        ]


def load_run(run_dir, compile=True):
    """The best model of a run and its metadata (`RunMetadata.to_dict()`, {} when the run has
    not finished); `compile=False` leaves out the optimizer."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT_FILE
    if not checkpoint.exists():
        raise FileNotFoundError(
            f"No checkpoint at {checkpoint}; run notebook 03 (or `python -m mobilevit_utils "
            f"train --out {run_dir}`) first."
        )
    model = keras.saving.load_model(checkpoint, safe_mode=True, compile=compile)
    if not compile:
        model = models.as_float32(model)  # a checkpoint of an interrupted mixed-precision run
    return model, RunMetadata.read(run_dir).to_dict() if RunMetadata.exists(run_dir) else {}


def float32_checkpoint(path):
    """Rewrite the `.keras` file at `path` as a float32 model (no-op when it already is one)."""
    if not Path(path).exists():
        return
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    converted = models.as_float32(model)
    if converted is not model:
        with atomic_path(path) as temporary:
            converted.save(temporary)
