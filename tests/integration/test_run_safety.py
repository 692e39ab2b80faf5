"""Nothing is lost, shown with real processes of `python -m mobilevit_utils train`: killed
(SIGKILL) or interrupted (SIGINT) while an epoch's files are written, two of them started into
one folder, --overwrite pointed at data or at a mistyped folder, and --resume given other data
or another recipe. After any of these, the run's files agree with each other (its history,
checkpoint and resume state are those of one epoch), `--resume` finishes the run, and what the
tool did not make is untouched. Every step a commit takes is tried in tests/unit/test_journal.py.
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pytest
from helpers import learnable_images, write_image_tree

from mobilevit_utils import cli, training

CLASSES = ["airplane", "cat"]
EPOCHS = 3
SEED = int(os.environ.get("RUN_SAFETY_SEED", time.time_ns() % 10_000))  # kill points, shown


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }


def image_tree(root, classes=CLASSES, seed=0):
    # 32 images per class: epochs long enough (seconds, not tenths) that a signal sent after
    # the first commit lands mid-run even when the test's own process waits for a core.
    write_image_tree(root / "train", *learnable_images(32, len(classes), seed=seed), classes)
    return root


def train_args(data, out, *extra):
    return [
        "train",
        "--preset",
        "quick",
        "--data-dir",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "8",
        *extra,
    ]


def start(folder, *args):
    """`python -m mobilevit_utils ARGS` started in `folder` (its caches land there)."""
    env = {
        **os.environ,
        "MOBILEVIT_ARTIFACTS": str(folder / "artifacts"),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mobilevit_utils", *map(str, args)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C as a person's terminal delivers it: a shell that starts a job in the background
        # (as a CI script may) leaves SIGINT ignored, and the child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def error_line(err):
    """The one line a refused command printed (TensorFlow's start-up noise left out)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def committed(run):
    state = run / "backup" / "state.json"
    return json.loads(state.read_text())["epoch"] if state.exists() else 0


def staged(run):
    backup = run / "backup"
    return sorted(p.name for p in backup.glob("epoch-*")) if backup.exists() else []


def signal_when(process, ready, sig, delay=0.0, timeout=600):
    """Send `sig` once `ready()` holds (polled every 5 ms) and `delay` seconds more; returns
    False when the process ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(sig)
    return True


def assert_consistent(run):
    """The files of a stopped run agree: state.json names the last committed epoch; history.csv
    has its rows (one fewer while that epoch's renames are pending, which resume finishes) and
    nothing interleaved; every file at its final name is whole."""
    epochs = committed(run)
    state = json.loads((run / "backup" / "state.json").read_text())
    pending = [name for name in state.get("staged", {}) if (run / "backup" / name).exists()]
    rows = [int(row["epoch"]) for row in training.read_history(run)]
    history_pending = any(name.endswith(".history.csv") for name in pending)
    assert rows == list(range(epochs - 1 if history_pending else epochs)), (rows, epochs, pending)
    if (run / "history.csv").exists():
        assert (run / "history.csv").read_text().count("epoch,") == 1  # one header
    if (run / "model.keras").exists():
        with zipfile.ZipFile(run / "model.keras") as checkpoint:
            assert checkpoint.testzip() is None
    weights = run / "backup" / "latest.weights.h5"
    if weights.exists():
        with h5py.File(weights, "r") as saved:
            assert len(saved.keys())
    return epochs


def assert_finished(run, out):
    """A run that ended well: every epoch once, metadata that agrees with the history."""
    history = training.read_history(run)
    assert [int(row["epoch"]) for row in history] == list(range(EPOCHS))
    metadata = training.RunMetadata.read(run)
    best = max(range(EPOCHS), key=lambda i: history[i]["val_accuracy"])
    assert metadata.epochs_completed == EPOCHS and metadata.best_epoch == best + 1
    assert metadata.best_val_accuracy == history[best]["val_accuracy"]
    assert metadata.class_names == CLASSES
    assert not (run / "backup").exists() and (out is None or "best checkpoint: " in out)
    model, _ = training.load_run(run, compile=False)
    assert model.output.shape[-1] == len(CLASSES)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(folder, data, run, moment): a run stopped by Ctrl-C (SIGINT), as a person would stop
    it, once its first epoch committed and as soon as the second's first file was staged (the
    signal follows within milliseconds; staging an epoch's files takes far longer); `moment`:
    the committed epochs and staged files it left. Tests copy it."""
    folder = tmp_path_factory.mktemp("safety")
    data = image_tree(folder / "data")
    run = folder / "run"
    process = start(folder, *train_args(data, run))
    staging = lambda: any(int(n[6:10]) > max(1, committed(run)) for n in staged(run))  # noqa: E731
    assert signal_when(process, staging, signal.SIGINT), finish(process)
    status, _, err = finish(process)
    assert status == 130 and "interrupted; rerun with --resume" in err, err[-3000:]
    return folder, data, run, {"committed": assert_consistent(run), "staged": staged(run)}


def copy_run(interrupted, tmp_path, name="run"):
    folder, data, run, _ = interrupted
    copy = tmp_path / name
    shutil.copytree(run, copy)
    return data, copy


def test_an_interrupt_while_an_epoch_is_staged_loses_that_epoch_only(interrupted):
    """The interrupted run above: stopped while epoch 2's files were staged, it said how to
    continue (status 130); epoch 2 did not happen (state.json and history.csv hold epoch 1, and
    every file at its final name is whole: `assert_consistent`), and what it had staged waits
    in backup/ for --resume to delete. Each test below resumes a copy of it, the next one to
    the run's end."""
    moment = interrupted[3]
    assert moment["committed"] == 1, f"interrupted after epoch 2's commit, not during: {moment}"
    assert moment["staged"] and all(name.startswith("epoch-0002.") for name in moment["staged"])


def kill_twice(data, run, folder, rng, scale):
    """SIGKILL a resumed run at a random moment of an epoch's staging, then just after a
    commit (delays drawn up to 1.5 s and 0.05 s, times `scale`). True when both kills landed
    (or the first on the run's way out, once it had finished), False when a run ended first."""
    kills = [
        ("staging", lambda before: any(int(n[6:10]) > before for n in staged(run)), 1.5),
        ("commit", lambda before: committed(run) > before, 0.05),
    ]
    for moment, after, within in kills:
        before, delay = committed(run), rng.uniform(0, within) * scale
        process = start(folder, *train_args(data, run, "--resume"))
        sent = signal_when(process, lambda: after(before), signal.SIGKILL, delay)  # noqa: B023
        status, _, err = finish(process)
        if not sent or status == 0:  # it finished first
            assert status == 0, f"seed {SEED}: {err[-3000:]}"
            return False
        assert status == -signal.SIGKILL, f"seed {SEED}: {err[-3000:]}"
        print(f"killed {delay:.2f} s after epoch {before + 1}'s {moment} began: {staged(run)}")
        if training.run_finished(run):  # killed on its way out, once finished
            return True
        assert assert_consistent(run) >= before, f"seed {SEED}, {moment}"
    return True


def test_a_run_killed_at_any_moment_resumes_to_the_same_end(interrupted, tmp_path):
    """SIGKILL at a random moment of an epoch's end: first while its files are staged (the
    resume state, the checkpoint, the history row), then just after its commit, while they are
    renamed into place. Each time the run's files agree, and --resume finishes the run with
    each epoch once. A run that ends before a kill lands proves nothing: it is tried again on a
    fresh copy with shorter delays (the last try kills as soon as each moment comes)."""
    rng = random.Random(SEED)
    for attempt, scale in enumerate((1.0, 0.25, 0.0)):
        data, run = copy_run(interrupted, tmp_path, f"run-{attempt}")
        if kill_twice(data, run, tmp_path, rng, scale):
            break
        print(f"attempt {attempt + 1}: the run ended before a kill landed; shorter delays")
    else:
        pytest.fail(f"seed {SEED}: no kill landed in 3 attempts, even at once")
    out = None
    if not training.run_finished(run):
        status, out, err = finish(start(tmp_path, *train_args(data, run, "--resume")))
        assert status == 0, f"seed {SEED}: {err[-3000:]}"
    assert_finished(run, out)


def names_under(folder):
    """The names of everything under `folder` now (none while it does not exist)."""
    return {name for _, dirs, files in os.walk(folder) for name in (*dirs, *files)}


def test_two_trains_into_one_folder_one_refuses_at_once(tmp_path):
    """Started one second apart: the second is refused in one line naming the first, at once
    (the first has not committed all its epochs yet) and before it writes anything (no file
    named after it ever appears in the run folder, and its own working folder holds no more
    than its cache of the data); the first trains to the end and its files agree."""
    data = image_tree(tmp_path / "data")
    run = tmp_path / "run"
    folders = {name: tmp_path / name for name in ("first", "second")}
    for folder in folders.values():
        folder.mkdir()
    first = start(folders["first"], *train_args(data, run))
    time.sleep(1)
    second = start(folders["second"], *train_args(data, run))
    processes = {first.pid: first, second.pid: second}
    seen = set()  # every name the run folder held while both ran
    deadline = time.monotonic() + 600
    while all(p.poll() is None for p in processes.values()) and time.monotonic() < deadline:
        seen |= names_under(run)
        time.sleep(0.01)
    ended = next((pid for pid, p in processes.items() if p.poll() is not None), None)
    # The run's progress when the first of the two ended.
    progress = (committed(run), (run / "metadata.json").exists())
    results = {pid: finish(process) for pid, process in processes.items()}
    refused = [pid for pid, (status, _, _) in results.items() if status == 2]
    assert len(refused) == 1, {pid: (s, e[-2000:]) for pid, (s, _, e) in results.items()}
    (winner,) = set(results) - set(refused)
    line = error_line(results[refused[0]][2])
    assert line == (
        f"error: {run} is in use by another train (pid {winner}); wait for it to end, or "
        "choose another output folder."
    )
    assert ended == refused[0] and progress[0] < EPOCHS and not progress[1], progress
    # atomic_path's temporaries and the journal's trash carry the writer's pid.
    assert not [name for name in seen if f".{refused[0]}-" in name], seen
    assert results[refused[0]][1].strip() == ""  # its error alone: no run started
    own = folders["first" if refused[0] == first.pid else "second"]
    written = [p.relative_to(own).as_posix() for p in own.rglob("*") if p.is_file()]
    assert all(name.startswith("data/cache/") for name in written), written
    status, out, err = results[winner]
    assert status == 0, err[-3000:]
    assert_finished(run, out)


def test_overwrite_never_deletes_data_or_a_run_for_a_mistyped_folder(interrupted, tmp_path):
    """--out pointed at the data, at a folder of the user's, at an unmarked folder of run files,
    or at a run while --data-dir is mistyped: each refused in one line, and not one file under
    the folder changed."""
    data, run = copy_run(interrupted, tmp_path)
    mydata = image_tree(tmp_path / "mydata")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    unmarked = tmp_path / "older"
    unmarked.mkdir()
    for name in ("model.keras", "history.csv", "metadata.json"):
        (unmarked / name).write_text(name)
    before = snapshot(tmp_path)
    cases = {
        "is inside --data-dir": train_args(mydata, mydata, "--overwrite"),
        "todo.txt, which train did not make": train_args(mydata, tmp_path / "notes", "--overwrite"),
        "not marked as a run folder": train_args(mydata, unmarked, "--overwrite"),
        "does not exist": train_args(tmp_path / "mydta", run, "--overwrite"),
    }
    processes = {says: start(tmp_path, *args) for says, args in cases.items()}  # in parallel
    for says, process in processes.items():
        status, _, err = finish(process)
        assert status == 2 and says in error_line(err), err[-3000:]
    assert snapshot(tmp_path) == before


def test_resume_refuses_other_data_or_recipe_and_changes_nothing(
    interrupted, tmp_path, capsys, monkeypatch
):
    data, run = copy_run(interrupted, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path / "artifacts"))
    other_classes = image_tree(tmp_path / "dogs", classes=["dog", "frog"])
    other_images = image_tree(tmp_path / "redrawn", seed=1)
    before = snapshot(run)
    cases = {
        "classes airplane, cat (": train_args(other_classes, run, "--resume"),
        "other images than": train_args(other_images, run, "--resume"),
        "the quick recipe, not cpu": [
            *train_args(data, run, "--resume")[:2],
            "cpu",
            *train_args(data, run, "--resume")[3:],
        ],
        "epochs 3, not 5": [*train_args(data, run, "--resume"), "--epochs", "5"],
    }
    for says, args in cases.items():
        capsys.readouterr()
        status = cli.main(args)
        err = capsys.readouterr().err
        assert status == 2 and says in error_line(err) and "--resume: " in err, err
        assert snapshot(run) == before
    # The resume state of an older version (Keras' BackupAndRestore files, no state.json) that
    # does not agree with the history (its row of the epoch lost).
    (run / "backup" / "state.json").unlink()
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 5}')
    capsys.readouterr()
    assert cli.main(train_args(data, run, "--resume")) == 2
    assert "older version" in error_line(capsys.readouterr().err)
