"""The epoch journal: a process stopped at any step of an epoch's commit leaves a run whose
files all belong to one epoch once it resumes (`journal.recover`). Every step is tried: each
file write, flush and rename. The real processes killed mid-run are in
tests/integration/test_run_safety.py; this checks every point they may or may not hit."""

import json
import os

import pytest

from mobilevit_utils.training import journal
from mobilevit_utils.training.runs import read_history

EPOCHS = 3
FILES = ("backup/latest.weights.h5", "backup/weight_average.npz", "model.keras")


class Crash(Exception):
    """The process dies here."""


def train_epochs(run, first, last):
    """Epochs first..last-1 as the callbacks commit them: each file says its epoch, the model is
    kept on odd epochs only (an improvement), the history gains a row."""
    epochs = journal.EpochJournal(run)
    for epoch in range(first, last):
        for target in FILES:
            if target == "model.keras" and epoch % 2:
                continue
            content = f"epoch {epoch + 1}"
            epochs.stage(epoch, target, lambda path, content=content: path.write_text(content))
        history = run / "history.csv"
        text = history.read_text() if history.exists() else "epoch,loss\n"
        text = "".join(text.splitlines(keepends=True)[: epoch + 1]) + f"{epoch},{1 / (epoch + 1)}\n"
        epochs.stage(epoch, "history.csv", lambda path, text=text: path.write_text(text))
        epochs.commit(epoch)


def assert_consistent(run, epochs):
    """The run's files are those of epoch `epochs` (its last committed one)."""
    assert [int(row["epoch"]) for row in read_history(run)] == list(range(epochs))
    if epochs:
        assert (run / "backup/latest.weights.h5").read_text() == f"epoch {epochs}"
        assert (run / "backup/weight_average.npz").read_text() == f"epoch {epochs}"
        best = epochs if epochs % 2 else epochs - 1  # the last epoch that kept the model
        assert (run / "model.keras").read_text() == f"epoch {best}"
    leftovers = [p.name for p in (run / "backup").iterdir() if p.name.startswith(("epoch-", "."))]
    assert not leftovers and not [p for p in run.iterdir() if p.name.startswith(".")]


def count_steps(monkeypatch, crash_at=None):
    """Make the `crash_at`-th write, flush or rename raise `Crash`; returns the step counter."""
    steps = {"n": 0}

    def step(real):
        def wrapped(*args, **kwargs):
            steps["n"] += 1
            if steps["n"] == crash_at:
                raise Crash
            return real(*args, **kwargs)

        return wrapped

    for name in ("replace", "fsync"):
        monkeypatch.setattr(os, name, step(getattr(os, name)))
    return steps


def test_a_clean_run_commits_every_epoch(tmp_path, monkeypatch):
    steps = count_steps(monkeypatch)
    train_epochs(tmp_path, 0, EPOCHS)
    assert json.loads((tmp_path / "backup/state.json").read_text())["epoch"] == EPOCHS
    assert journal.recover(tmp_path) == EPOCHS
    assert_consistent(tmp_path, EPOCHS)
    assert steps["n"] > 10


def _steps_of_a_run(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        steps = count_steps(patch)
        train_epochs(tmp_path / "count", 0, EPOCHS)
    return steps["n"]


def test_a_crash_at_any_step_resumes_from_a_consistent_epoch(tmp_path, monkeypatch):
    total = _steps_of_a_run(tmp_path, monkeypatch)
    seen = set()
    for crash_at in range(1, total + 1):
        run = tmp_path / f"crash{crash_at}"
        run.mkdir()
        with monkeypatch.context() as patch:
            count_steps(patch, crash_at)
            with pytest.raises(Crash):
                train_epochs(run, 0, EPOCHS)
        committed = journal.recover(run)
        assert committed == journal.committed_epochs(run)
        assert_consistent(run, committed)
        seen.add(committed)
        train_epochs(run, committed, EPOCHS)  # the resumed run trains the rest
        assert journal.recover(run) == EPOCHS
        assert_consistent(run, EPOCHS)
    assert seen == set(range(EPOCHS)) | {EPOCHS}  # crashes before, within and after commits


def test_what_a_killed_process_leaves_is_rolled_back(tmp_path):
    """Half-written staged files of an epoch that was not committed, temporaries of
    interrupted atomic writes, and history rows beyond the committed epoch."""
    train_epochs(tmp_path, 0, 2)
    (tmp_path / "backup" / "epoch-0003.latest.weights.h5").write_bytes(b"\x89HDF half")
    (tmp_path / "backup" / ".state.4242-0a1b2c3d.json").write_text("{")
    (tmp_path / ".history.4242-0a1b2c3d.csv").write_text("epoch")
    with open(tmp_path / "history.csv", "a") as history:
        history.write("2,0.3\n")  # a row of an epoch that did not commit
    assert journal.recover(tmp_path) == 2
    assert_consistent(tmp_path, 2)


def test_the_commit_is_finished_when_the_renames_were_cut_short(tmp_path, monkeypatch):
    train_epochs(tmp_path, 0, 1)
    real = os.replace
    renamed = []

    def first_rename_only(source, target):
        if renamed and str(source).endswith(tuple(FILES) + ("history.csv",)):
            raise Crash  # after state.json and one staged file were renamed
        renamed.append(target)
        return real(source, target)

    monkeypatch.setattr(os, "replace", first_rename_only)
    with pytest.raises(Crash):
        train_epochs(tmp_path, 1, 2)
    monkeypatch.setattr(os, "replace", real)
    assert journal.committed_epochs(tmp_path) == 2
    assert journal.recover(tmp_path) == 2
    assert_consistent(tmp_path, 2)


def test_a_damaged_state_is_one_line(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "state.json").write_text("[1, 2")
    with pytest.raises(journal.ResumeError, match="damaged") as error:
        journal.recover(tmp_path)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------------------------
# What a run was started with


def _identity(recipe=None, classes=("a", "b"), seed=0, per_class=4):
    import dataclasses

    from helpers import learnable_images

    from mobilevit_utils import data, training

    x, y = learnable_images(per_class, len(classes), seed=seed)
    x_train, y_train, x_val, y_val = data.stratified_split(x, y, 0.25, 0)
    dataset = data.ImageDataset(x_train, y_train, x_val, y_val, tuple(classes), "images")
    config = dataclasses.replace(training.get_recipe("quick"), **(recipe or {}))
    return journal.identity(config, dataset)


def test_resume_names_what_differs(tmp_path):
    started = _identity()
    journal.start_state(tmp_path, started, resume=False)
    assert journal.check_same_run(tmp_path, _identity()) is None  # the same: resumed
    assert journal.check_same_run(tmp_path, _identity({"jit_compile": True})) is None
    cases = {
        "the quick recipe, not cpu": _identity({"name": "cpu"}),
        "epochs 2, not 5": _identity({"epochs": 5}),
        "classes a, b (images), not dog, frog (images)": _identity(classes=("dog", "frog")),
        "6 training and 2 validation images of 32x32 (images), not 9 training": _identity(
            per_class=6
        ),
        "other images than images holds now": _identity(seed=1),
    }
    for says, requested in cases.items():
        with pytest.raises(journal.ResumeError) as error:
            journal.check_same_run(tmp_path, requested)
        assert says in str(error.value) and "\n" not in str(error.value), str(error.value)
    # A recipe recorded before a field existed had that field's default.
    state = json.loads(journal.state_path(tmp_path).read_text())
    del state["recipe"]["num_heads"]  # None, its default
    journal.state_path(tmp_path).write_text(json.dumps(state))
    assert journal.check_same_run(tmp_path, started) is None


def test_an_older_versions_resume_state_is_taken_over_when_it_agrees(tmp_path):
    """Keras' BackupAndRestore files (written in place) and no state.json: taken over when
    they agree with the history and config.json; refused in one line when they do not."""
    requested = _identity()
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"weights")
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    (tmp_path / "config.json").write_text(json.dumps(requested["recipe"]))
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    assert journal.check_same_run(tmp_path, requested) == 2
    journal.start_state(tmp_path, requested, resume=True, epochs=2)
    assert journal.committed_epochs(tmp_path) == 2 and journal.recover(tmp_path) == 2
    journal.state_path(tmp_path).unlink()
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")  # the lost row of the issue
    with pytest.raises(journal.ResumeError, match="does not agree with the run's history"):
        journal.check_same_run(tmp_path, requested)
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    with pytest.raises(journal.ResumeError, match="epochs 2, not 4"):
        journal.check_same_run(tmp_path, _identity({"epochs": 4}))
