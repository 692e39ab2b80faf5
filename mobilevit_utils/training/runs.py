"""Run folders: created, refused, resumed or finished (`prepare_run_dir`, `run_finished`), owned
by one process at a time (`RunClaim`), and read back (`load_run`, `read_history`,
`fit_seconds`). What a folder holds::

    RUN_DIR/.mobilevit-run     the marker: train made this folder; locked while a process trains
    RUN_DIR/model.keras        best checkpoint (highest validation accuracy)
    RUN_DIR/config.json        the resolved TrainConfig
    RUN_DIR/environment.json   versions, backend, devices
    RUN_DIR/history.csv        one row per epoch (appended across resumes)
    RUN_DIR/metadata.json      `RunMetadata`: class names, preprocessing, wall time, best epoch
    RUN_DIR/MODEL_CARD.md      the model card, written when the run finishes
    RUN_DIR/backup/            the resume state (`journal`); removed when the run finishes
    RUN_DIR/head/              a fine-tuning run's first phase (the new head alone), a run itself
    RUN_DIR/logs/              TensorBoard logs (when TensorFlow is installed)

Every file is written under a temporary name and renamed into place; an epoch's files are
committed together (`journal.EpochJournal`).

Nothing is lost: `--overwrite` replaces only a folder that carries the marker (or an older
version's run: run files only, with train's config.json), and removes only the files above; a
folder holding anything else is refused, naming it. A folder in use by
another process (its marker locked with `fcntl.flock`, which the system releases when that
process ends, killed or not) is refused at once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from pathlib import Path

import keras

from mobilevit_utils import models
from mobilevit_utils.errors import UserError
from mobilevit_utils.run_files import METADATA_FILE, RunMetadata, atomic_path

try:
    import fcntl
except ImportError:  # Windows: no lock, the other checks still apply
    fcntl = None

CHECKPOINT_FILE = "model.keras"
CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"
HISTORY_FILE = "history.csv"
HEAD_DIR = "head"
BACKUP_DIR = "backup"
MARKER = ".mobilevit-run"
MARKER_TEXT = (
    "This folder is a run of `python -m mobilevit_utils train`. While a train uses it, this "
    "file is locked; --overwrite may replace the run's files, and no others.\n"
)
# The names train writes at a run folder's top level (head/ holds a run of its own).
RUN_FILES = (
    MARKER,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    HISTORY_FILE,
    METADATA_FILE,
    "MODEL_CARD.md",
    BACKUP_DIR,
    HEAD_DIR,
    "logs",
    ".write-test",
)
# `run_files.atomic_path`'s temporaries (.model.1234-0a1b2c3d.keras), left by a killed process.
TEMPORARY = re.compile(r"^\..+\.\d+-[0-9a-f]{8}(\.[A-Za-z0-9]+)?$")


class RunExistsError(FileExistsError):
    pass


class RunInUseError(RunExistsError):
    """Another process trains in the run folder."""


class RunFolderError(UserError, PermissionError):
    """The run folder cannot be created or written to."""


def run_finished(run_dir):
    """True once `train` has written the run's metadata and removed its resume state. A run
    stopped before its first epoch ended has neither, and starts again."""
    run_dir = Path(run_dir)
    return RunMetadata.exists(run_dir) and not (run_dir / BACKUP_DIR).exists()


def is_run_file(path):
    """Whether `path`, an entry of a run folder, is one that train writes."""
    return path.name in RUN_FILES or bool(TEMPORARY.match(path.name))


def foreign_entry(run_dir):
    """The first entry of `run_dir` (or of its head/ phase) that train did not make, or None."""
    run_dir = Path(run_dir)
    for entry in sorted(run_dir.iterdir()):
        if not is_run_file(entry):
            return entry
        if entry.name == HEAD_DIR and entry.is_dir():
            inner = foreign_entry(entry)
            if inner is not None:
                return inner
    return None


def older_run(run_dir):
    """Whether `run_dir`, unmarked, is a run an older version of train made: nothing but run
    files, and a config.json holding a recipe (train's signature)."""
    run_dir = Path(run_dir)
    try:
        recipe = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    signature = {"name", "model", "epochs", "batch_size", "learning_rate"}
    return isinstance(recipe, dict) and signature <= recipe.keys() and not foreign_entry(run_dir)


def holds_run(run_dir):
    """Whether `run_dir` holds anything but (at most) the marker."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(entry.name != MARKER for entry in run_dir.iterdir())


def check_run_dir(run_dir, resume=False, overwrite=False):
    """Refuse, reading only, what train must not do with `run_dir`: write into a file or into a
    folder it did not make, start over a run without --overwrite, resume a finished run, or
    replace a folder that is not marked as a run or that holds other files."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir} is a file; the run needs a folder: choose another path.")
    if not holds_run(run_dir):
        return
    marked = (run_dir / MARKER).is_file()
    foreign = foreign_entry(run_dir)
    if foreign is not None and not marked:
        raise RunExistsError(
            f"{run_dir} holds {foreign.relative_to(run_dir)}, which train did not make: it is not "
            "a run folder, and train writes only into a new or empty folder or one of its runs; "
            "nothing was changed: choose another output folder."
        )
    if foreign is not None and overwrite and not resume:
        raise RunExistsError(
            f"{run_dir} holds {foreign.relative_to(run_dir)}, which train did not make, beside "
            "the run; --overwrite removes only a run's own files and nothing was changed: move "
            "it out of the folder, or choose another output folder."
        )
    if resume and run_finished(run_dir):
        raise RunExistsError(
            f"The run in {run_dir} has finished (its resume state is removed on completion); "
            "start a new run in another folder."
        )
    if overwrite and not resume and not marked and not older_run(run_dir):
        raise RunExistsError(
            f"{run_dir} is not marked as a run folder of this tool (no {MARKER} file, nor a "
            f"{CONFIG_FILE} of train's), so --overwrite will not delete its files; delete them "
            "yourself, or choose another output folder."
        )
    if not resume and not overwrite:
        raise RunExistsError(
            f"{run_dir} already holds a run; continue it with --resume (resume=True), replace "
            "it with --overwrite (overwrite=True), or choose another output folder."
        )


def remove_run_files(run_dir):
    """Delete the run files of `run_dir` (never the marker, nor anything else): what
    --overwrite replaces. The metadata goes first, so that a run cut short here is not taken
    for a finished one."""
    run_dir = Path(run_dir)
    entries = sorted(run_dir.iterdir(), key=lambda entry: entry.name != METADATA_FILE)
    for entry in entries:
        if entry.name == MARKER or not is_run_file(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _check_writable(run_dir):
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise RunFolderError(
            f"Cannot write to {run_dir}: {error.strerror}; choose another output folder."
        ) from None


def prepare_run_dir(run_dir, resume=False, overwrite=False):
    """Create `run_dir`. An existing run is continued (`resume`), replaced (`overwrite`: its run
    files, in a folder train marked as a run), or refused so that nothing is lost by accident.
    `train` does the same through a `RunClaim`, which also locks the folder."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume, overwrite)
    if overwrite and not resume and holds_run(run_dir):
        remove_run_files(run_dir)
    _check_writable(run_dir)
    return run_dir


def lock_holder(path):
    """The pid of the process holding `fcntl.flock` on `path` (Linux's /proc/locks), or None."""
    try:
        stat = os.stat(path)
        device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino} "
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if "FLOCK" in fields and device in line:
                    return int(fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return None


class RunClaim:
    """One process's hold on a run folder, from its checks to its end.

    Created before the inputs are validated: it refuses, reading only, a folder train must not
    use (`check_run_dir`), and one in use by another train, whose marker it then locks. `begin`
    (once every input is valid) creates the folder and its marker, locks it, checks it again,
    and removes the old run's files for --overwrite. `release` (or the process ending) unlocks
    it; `abandon` removes a folder this claim created when nothing was trained in it.
    """

    def __init__(self, run_dir, resume=False, overwrite=False):
        self.run_dir = Path(run_dir)
        self.resume, self.overwrite = resume, overwrite
        self.created = False
        self._fd = None
        if (self.run_dir / MARKER).is_file():
            self._lock(create=False)  # first: a run in use is refused as such
        try:
            check_run_dir(self.run_dir, resume, overwrite)
        except BaseException:
            self.release()
            raise

    def _lock(self, create):
        marker = self.run_dir / MARKER
        try:
            fd = os.open(marker, os.O_RDONLY | (os.O_CREAT if create else 0), 0o666)
        except OSError as error:
            raise RunFolderError(
                f"Cannot open {marker}: {error.strerror}; choose another output folder."
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                pid = lock_holder(marker)
                raise RunInUseError(
                    f"{self.run_dir} is in use by another train"
                    + (f" (pid {pid})" if pid else "")
                    + "; wait for it to end, or choose another output folder."
                ) from None
        self._fd = fd

    def begin(self):
        """Make the folder the run's: create it and its marker, lock it, check it again (another
        process may have changed it since), and for --overwrite remove the old run's files."""
        try:
            self.run_dir.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            pass
        except OSError as error:
            raise RunFolderError(
                f"Cannot create {self.run_dir}: {error.strerror}; choose another output folder."
            ) from None
        if self._fd is None:
            if not (self.run_dir / MARKER).is_file():  # a folder it did not make stays unmarked
                check_run_dir(self.run_dir, self.resume, self.overwrite)
            self._lock(create=True)  # a run another process began meanwhile: refused as in use
            marker = self.run_dir / MARKER
            if marker.stat().st_size == 0:
                marker.write_text(MARKER_TEXT)
        check_run_dir(self.run_dir, self.resume, self.overwrite)
        if self.overwrite and not self.resume and holds_run(self.run_dir):
            remove_run_files(self.run_dir)
        _check_writable(self.run_dir)
        return self.run_dir

    def abandon(self):
        """Remove the folder `begin` created, when it holds nothing but run files and nothing was
        trained in it (no history): a refused run leaves nothing behind."""
        run_dir = self.run_dir
        if not self.created or not run_dir.is_dir() or (run_dir / HISTORY_FILE).exists():
            return
        if foreign_entry(run_dir) is None:
            remove_run_files(run_dir)
            (run_dir / MARKER).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def fit_seconds(history):
    """`fit`'s time from a history: every epoch's `epoch_time_s` (validation included) summed,
    so a run resumed across sessions counts them all; None where an epoch lacks the column."""
    times = [row.get("epoch_time_s") for row in history]
    return sum(float(t) for t in times) if times and all(times) else None


def read_history(run_dir):
    """history.csv as a list of dicts with float values (CSVLogger's format: `epoch` counted
    from 0, as Keras counts it; the epoch lines and `best_epoch` count from 1)."""
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
