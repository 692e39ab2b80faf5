"""Run folders: train writes only into a new or empty folder or one of its runs (marked with
`.mobilevit-run`), --overwrite removes only a run's own files, and a folder one process trains
in is locked against the others. The same, as real processes: tests/integration/test_run_safety.py."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from mobilevit_utils import training
from mobilevit_utils.training import runs
from mobilevit_utils.training.runs import MARKER, RunClaim, RunExistsError, RunInUseError


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def a_run(folder, marked=True, finished=True):
    """A run folder as train leaves it (files' contents do not matter here)."""
    folder.mkdir(parents=True)
    if marked:
        (folder / MARKER).write_text(runs.MARKER_TEXT)
    for name in ("model.keras", "config.json", "environment.json", "history.csv"):
        (folder / name).write_text(name)
    (folder / "logs" / "train").mkdir(parents=True)
    (folder / "logs" / "train" / "events.out.tfevents.1").write_text("")
    if finished:
        (folder / "metadata.json").write_text("{}")
    else:
        (folder / "backup").mkdir()
        (folder / "backup" / "state.json").write_text('{"epoch": 1}')
    return folder


def refused(claim_args, says):
    with pytest.raises(RunExistsError) as error:
        RunClaim(*claim_args[:1], **claim_args[1])
    message = str(error.value)
    assert "\n" not in message
    for part in [says] if isinstance(says, str) else says:
        assert part in message, message
    return message


def test_overwrite_never_removes_a_dataset_or_a_folder_it_did_not_make(tmp_path):
    data = tmp_path / "mydata"
    (data / "train" / "cat").mkdir(parents=True)
    (data / "train" / "cat" / "0.jpg").write_bytes(b"jpeg")
    (data / "cifar.tar").write_bytes(b"tar")
    before = snapshot(tmp_path)
    for flags in ({"overwrite": True}, {"resume": True}, {}):
        refused((data, flags), says=["cifar.tar", "which train did not make", "not a run folder"])
    assert snapshot(tmp_path) == before
    # A folder of run files without the marker, nor train's config.json: made by hand.
    legacy = a_run(tmp_path / "legacy", marked=False)
    refused((legacy, {"overwrite": True}), says=["not marked as a run", MARKER, "yourself"])
    refused((legacy, {}), says=["already holds a run", "--resume", "--overwrite"])
    # A run with a file of the user's beside it.
    mine = a_run(tmp_path / "mine")
    (mine / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused((mine, {"overwrite": True}), says=["notes.txt", "did not make", "move it out"])
    (mine / "notes.txt").unlink()
    (mine / "head").mkdir()
    (mine / "head" / "notes.txt").write_text("mine")
    refused((mine, {"overwrite": True}), says=["head/notes.txt"])
    (mine / "head" / "notes.txt").unlink()
    (mine / "notes.txt").write_text("mine")
    assert snapshot(tmp_path) == before


def test_overwrite_removes_the_run_files_and_keeps_the_marker(tmp_path):
    run = a_run(tmp_path / "run", finished=False)
    (run / ".model.4242-0a1b2c3d.keras").write_text("a killed save's temporary")
    (run / "head" / "backup").mkdir(parents=True)
    (run / "head" / "history.csv").write_text("")
    claim = RunClaim(run, overwrite=True)
    try:
        assert claim.begin() == run
        assert sorted(p.name for p in run.iterdir()) == [MARKER]
    finally:
        claim.release()


def test_overwrite_replaces_an_older_versions_run(tmp_path):
    """Unmarked, but nothing but run files and a config.json holding train's recipe: a run of
    a version before the marker (the notebooks' runs on an upgraded machine)."""
    older = a_run(tmp_path / "older", marked=False)
    (older / "config.json").write_text(json.dumps(training.get_recipe("quick").to_dict()))
    claim = RunClaim(older, overwrite=True)
    claim.begin()
    claim.release()
    assert sorted(p.name for p in older.iterdir()) == [MARKER]


def test_resume_refuses_a_finished_run_and_takes_an_unfinished_one(tmp_path):
    refused((a_run(tmp_path / "done"), {"resume": True}), says="has finished")
    unfinished = a_run(tmp_path / "unfinished", finished=False)
    (unfinished / "notes.txt").write_text("the user's, left alone")
    claim = RunClaim(unfinished, resume=True)
    claim.begin()
    claim.release()
    assert (unfinished / "notes.txt").read_text() == "the user's, left alone"


def test_a_folder_in_use_is_refused_at_once_naming_the_process(tmp_path):
    run = tmp_path / "run"
    first = RunClaim(run)
    first.begin()
    assert (run / MARKER).read_text() == runs.MARKER_TEXT
    try:
        for flags in ({"resume": True}, {"overwrite": True}, {}):
            with pytest.raises(RunInUseError) as error:
                RunClaim(run, **flags)
            assert str(error.value) == (
                f"{run} is in use by another train (pid {os.getpid()}); wait for it to end, or "
                "choose another output folder."
            )
    finally:
        first.release()
    second = RunClaim(run, resume=True)  # released: free again
    second.begin()
    second.release()


def test_a_killed_process_leaves_no_lock(tmp_path):
    run = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal
        from mobilevit_utils.training.runs import RunClaim
        claim = RunClaim({str(run)!r})
        claim.begin()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert process.returncode == -9, process.stderr
    claim = RunClaim(run, resume=True)
    claim.begin()
    claim.release()


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    claim = RunClaim(tmp_path / "new" / "run")
    claim.begin()
    assert (tmp_path / "new" / "run" / MARKER).exists()
    claim.abandon()
    claim.release()
    assert not (tmp_path / "new" / "run").exists()
    with pytest.raises(RunExistsError, match="is a file"):
        (tmp_path / "file").write_text("")
        RunClaim(tmp_path / "file")
