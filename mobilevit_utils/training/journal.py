"""A run's resume state (backup/state.json), and the epochs committed through it: an epoch's
files change together, or not at all.

How an epoch ends (`EpochJournal`): every run file the epoch changes is written whole under a
staged name in backup/ (`epoch-0003.latest.weights.h5`, `epoch-0003.model.keras`,
`epoch-0003.weight_average.npz`, `epoch-0003.history.csv`) and flushed to disk. Then state.json
is written (atomically): it names the epoch and its staged files. That write is the commit.
The staged files are then renamed over the files they replace (history.csv, model.keras,
backup/latest.weights.h5, backup/weight_average.npz).

How a run resumes (`recover`, before its first epoch): the renames of a committed epoch that a
killed process did not finish are finished; the staged files of an epoch that was not
committed are deleted, and history.csv rows beyond the committed epoch dropped. So the
checkpoint, the history, the weights resumed from and the weight average always belong to
the same epoch, and an epoch whose commit was not written did not happen (it is trained again).

state.json also records what the run was started with, its recipe and a fingerprint of its
data (`identity`); `--resume` refuses other data or another recipe (`check_same_run`) before
anything is written. The run's end removes backup/ with one rename (`finish`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from mobilevit_utils.errors import InvalidInputError
from mobilevit_utils.run_files import write_atomic, write_json
from mobilevit_utils.training.recipes import TrainConfig
from mobilevit_utils.training.runs import (
    BACKUP_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    TEMPORARY,
    read_history,
)

STATE_FILE = "state.json"
STAGED = re.compile(r"^epoch-\d+\.")
# Keras' own BackupAndRestore files: a run of an older version, which wrote them in place.
# Taken over when they agree with the run's history (`legacy_epochs`).
LEGACY_FILES = ("training_metadata.json", "latest.weights.h5")
# Recipe fields that change how a run computes, not what it learns: a resumed run may differ.
RESUMABLE_CHANGES = ("jit_compile", "parallel_augmentation")


class ResumeError(InvalidInputError):
    """A run cannot be resumed as asked: other data, another recipe, or a damaged state."""


def state_path(run_dir):
    return Path(run_dir) / BACKUP_DIR / STATE_FILE


def read_state(run_dir):
    """The run's resume state (a dict), or None when it has none."""
    path = state_path(run_dir)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("epoch", 0), int):
        raise ResumeError(
            f"{path} is damaged (not the resume state train writes); the run cannot be resumed: "
            "start a new one (--overwrite, or another output folder)."
        )
    return state


def committed_epochs(run_dir):
    """How many epochs of the run in `run_dir` are committed (0 without a resume state)."""
    return (read_state(run_dir) or {}).get("epoch", 0)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EpochJournal:
    """Stages the files of an epoch (`stage`), then commits them together (`commit`)."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.backup = self.run_dir / BACKUP_DIR
        self.staged = {}

    def stage(self, epoch, target, write):
        """Have `write(path)` write, under a staged name, what the run file `target` (relative
        to the run folder) holds once epoch `epoch` (0-based) is committed."""
        self.backup.mkdir(parents=True, exist_ok=True)
        path = self.backup / f"epoch-{epoch + 1:04d}.{Path(target).name}"
        path.unlink(missing_ok=True)
        write(path)
        _fsync(path)
        self.staged[path.name] = Path(target).as_posix()

    def commit(self, epoch):
        """Commit epoch `epoch` (0-based): write state.json naming it and its staged files, then
        rename them into place."""
        state = {**(read_state(self.run_dir) or {}), "epoch": epoch + 1, "staged": self.staged}
        self.backup.mkdir(parents=True, exist_ok=True)
        write_json(state_path(self.run_dir), state)  # the commit
        self.staged = {}
        apply(self.run_dir, state)


def apply(run_dir, state):
    """Rename a committed epoch's staged files into place (those already renamed are gone)."""
    run_dir = Path(run_dir)
    for name, target in (state.get("staged") or {}).items():
        staged = run_dir / BACKUP_DIR / name
        if staged.exists():
            os.replace(staged, run_dir / target)


def recover(run_dir):
    """Make the run's files those of its last committed epoch (see the module's docstring);
    returns how many epochs are committed. Only the process holding the run's lock calls it."""
    run_dir = Path(run_dir)
    state = read_state(run_dir) or {}
    apply(run_dir, state)
    for folder in (run_dir, run_dir / BACKUP_DIR):
        for entry in folder.iterdir() if folder.is_dir() else ():
            if folder.name == BACKUP_DIR and STAGED.match(entry.name):
                entry.unlink()  # an epoch that was not committed
            elif TEMPORARY.match(entry.name):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    epochs = state.get("epoch", 0)
    history = run_dir / HISTORY_FILE
    if history.is_file():
        lines = history.read_text().splitlines(keepends=True)
        if len(lines) > epochs + 1:  # the header and one row per committed epoch
            write_atomic(history, "".join(lines[: epochs + 1]))
    return epochs


def finish(run_dir):
    """Remove the resume state of a run whose metadata is written: one rename, after which the
    run is finished (`runs.run_finished`), then the deletion of what was renamed."""
    backup = Path(run_dir) / BACKUP_DIR
    if backup.exists():
        trash = backup.with_name(f".{BACKUP_DIR}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(backup, trash)
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# What a run was started with


def data_fingerprint(dataset):
    """What identifies a dataset: its classes, split sizes, image shape, and a digest of its
    images and labels (the same images give the same digest wherever the folder is)."""
    digest = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        if array.size:  # (a final fit has no validation images)
            digest.update(memoryview(array).cast("B"))
    return {
        "source": str(dataset.source),
        "class_names": [str(name) for name in dataset.class_names],
        "train_images": int(len(dataset.y_train)),
        "val_images": int(len(dataset.y_val)),
        "image_shape": [int(n) for n in dataset.image_shape],
        "digest": digest.hexdigest()[:16],
    }


def identity(config, dataset):
    """What a run is started with: its resolved recipe and its data (`data_fingerprint`)."""
    return {
        "recipe": json.loads(json.dumps(config.to_dict(), default=str)),
        "data": data_fingerprint(dataset),
    }


def _words(value):
    return json.dumps(value) if not isinstance(value, str) else value


def recipe_difference(recorded, requested):
    """How the recipe a run was started with differs from the one asked for (None: alike). A
    field the recorded recipe lacks (recorded before it existed) had its default."""
    recorded = {**TrainConfig().to_dict(), **recorded}
    if recorded.get("name") != requested.get("name"):
        return f"the {recorded.get('name')} recipe, not {requested.get('name')}"
    for key in requested.keys() | recorded.keys():
        if key in RESUMABLE_CHANGES or recorded.get(key) == requested.get(key):
            continue
        return f"{key} {_words(recorded.get(key))}, not {_words(requested.get(key))}"
    return None


def _images(fingerprint):
    shape = "x".join(str(n) for n in (fingerprint.get("image_shape") or [])[:2])
    return (
        f"{fingerprint.get('train_images')} training and {fingerprint.get('val_images')} "
        f"validation images of {shape} ({fingerprint.get('source')})"
    )


def data_difference(recorded, requested):
    """How the data a run was started with differs from the data given (None: the same)."""
    old, new = recorded, requested
    if old.get("class_names") != new["class_names"]:
        return (
            f"classes {', '.join(old.get('class_names') or [])} ({old.get('source')}), not "
            f"{', '.join(new['class_names'])} ({new['source']})"
        )
    counts = ("train_images", "val_images", "image_shape")
    if [old.get(key) for key in counts] != [new[key] for key in counts]:
        return f"{_images(old)}, not {_images(new)}"
    if old.get("digest") != new["digest"]:
        return (
            f"other images than {new['source']} holds now (the same classes and counts, other "
            "pixels or labels)"
        )
    return None


def _refuse_difference(run_dir, recorded, requested, data=True):
    difference = recipe_difference(recorded["recipe"], requested["recipe"])
    same = "the same recipe (its config.json)"
    if difference is None and data:
        difference = data_difference(recorded.get("data") or {}, requested["data"])
        same = "the data it was started with (--data-dir)"
    if difference is not None:
        raise ResumeError(
            f"--resume: {run_dir} was started with {difference}; resume it with {same}, or "
            "start a new run (--overwrite, or another output folder)."
        )


def legacy_epochs(run_dir, requested):
    """How many epochs the resume state of an older version (Keras' BackupAndRestore files,
    written in place) holds, when it agrees with the run's history and config.json: it is then
    taken over (its data cannot be checked: that version did not record it). Else refused."""
    backup = Path(run_dir) / BACKUP_DIR
    try:
        epochs = int(json.loads((backup / LEGACY_FILES[0]).read_text())["epoch"])
        recipe = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        epochs, recipe = None, None
    rows = len(read_history(run_dir))
    if epochs is None or not isinstance(recipe, dict) or rows != epochs:
        raise ResumeError(
            f"{backup} is the resume state of an older version of mobilevit_utils that does not "
            f"agree with the run's history.csv ({rows} rows) or config.json, so it cannot be "
            "resumed safely; start a new run (another output folder)."
        )
    _refuse_difference(run_dir, {"recipe": recipe}, requested, data=False)
    return epochs


def check_same_run(run_dir, requested):
    """Refuse to resume the run in `run_dir` with another recipe or other data than it was
    started with (`requested`: `identity`), in one line naming the difference. Reads only;
    returns the epochs of an older version's resume state to take over (`legacy_epochs`)."""
    state = read_state(run_dir)
    backup = Path(run_dir) / BACKUP_DIR
    if state is None and (backup / LEGACY_FILES[1]).exists():
        return legacy_epochs(run_dir, requested)
    if state and "recipe" in state:
        _refuse_difference(run_dir, state, requested)
    return None


def start_state(run_dir, requested, resume, epochs=None):
    """Record what the run is started with, unless it resumes a run that recorded it; `epochs`:
    those of an older version's resume state taken over."""
    state = read_state(run_dir) if resume else None
    if state is not None and "recipe" in state:
        return
    state = {"epoch": epochs or 0, "staged": {}, **(state or {}), **requested}
    state_path(run_dir).parent.mkdir(parents=True, exist_ok=True)
    write_json(state_path(run_dir), state)


def begin_run(claim, config, dataset, inputs=None):
    """Once every input is valid: check that a resumed run resumes the same thing (reading
    only), then make the folder the run's (`runs.RunClaim.begin`: created, marked and locked,
    and for --overwrite the old run's files removed) and record what it is started with, and
    `inputs` (what `recorded_start` gives back to a --resume that omits them)."""
    requested = identity(config, dataset)
    epochs = check_same_run(claim.run_dir, requested) if claim.resume else None
    claim.begin()
    recorded = {**requested, "inputs": inputs} if inputs is not None else requested
    start_state(claim.run_dir, recorded, claim.resume, epochs)


def recorded_start(run_dir):
    """What the unfinished run in `run_dir` was started with, for a --resume that does not say
    it again: {"recipe": its resolved recipe (a dict), "data": `data_fingerprint`, and the
    `inputs` train recorded: "data_dir" (absolute; None for CIFAR-10's download), "image_size"
    (as asked; None: the images' own or the fine-tuned model's), "on_error"}. Runs of an older
    version lack the inputs; None when there is no resume state to read."""
    state = read_state(run_dir)
    if not state or not isinstance(state.get("recipe"), dict):
        return None
    inputs = state.get("inputs") if isinstance(state.get("inputs"), dict) else {}
    return {"recipe": state["recipe"], "data": state.get("data") or {}, **inputs}
