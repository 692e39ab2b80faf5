"""A careful tester's probe of the command line: train, evaluate, predict and export driven
through damaged, foreign and interrupted inputs. For every case, two things hold:

- the result is right, or the command exits non-zero with one line on stderr that starts with
  "error:" (no traceback);
- no file outside the command's output folder changed: every file under the working folder
  (the data, the models, the other runs) is hashed before and after. The tool's own caches
  (data/cache, data/extracted) may gain files; none may change or vanish.

One briefly trained run serves every case. Commands run in this process (a model's load is
the slow part) except the train that is killed, a real process stopped at a random moment.
The real interrupted and concurrent trains, and every kill point, are tests/integration/
test_run_safety.py and tests/unit/test_journal.py.
"""

import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import learnable_images, write_image_tree

from mobilevit_utils import cli, data, training
from mobilevit_utils.training import journal, runs

CLASSES = ["airplane", "cat", "dog"]
CACHES = ("data/cache/", "data/extracted/")  # the tool's own: files may be added there


def snapshot(folder):
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def changes(before, after, allowed):
    """Files added, changed or removed outside the `allowed` folders (caches: only added)."""
    wrong = []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) == after.get(path) or path.startswith(allowed):
            continue
        if path.startswith(CACHES) and path not in before:
            continue
        wrong.append(f"{path} {'added' if path not in before else 'changed or removed'}")
    return wrong


def run_cli(capsys, args):
    """(status, stdout, stderr) of `python -m mobilevit_utils ARGS` in this process; an
    exception escaping the command line is a traceback, and fails the case."""
    capsys.readouterr()
    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exit:  # argparse
        status = exit.code
    except BaseException as error:  # a traceback: never right
        pytest.fail(f"traceback from {args}: {error.__class__.__name__}: {error}")
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err):
    lines = [line for line in err.splitlines() if line.strip()]
    return status != 0 and len(lines) == 1 and lines[0].startswith("error: ")


# --------------------------------------------------------------------------------------------
# What the cases are made of


def jpeg_bytes(color=(200, 30, 30)):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_tree(root, per_class=8, classes=CLASSES):
    write_image_tree(root / "train", *learnable_images(per_class, len(classes)), classes)
    return root


def tar_with(path, members):
    """A tar of (name, bytes or ("symlink", target)) members."""
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if isinstance(payload, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, payload[1]
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def lambda_model(path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3)(x)).save(path)
    (path.parent / "metadata.json").write_text(json.dumps({"class_names": CLASSES}))
    return path


class Probe:
    """The working folder of the cases, and a briefly trained run in it."""

    def __init__(self, root):
        self.root = root
        self.images = image_tree(root / "images")
        self.run = root / "runs" / "base"

    def folder(self, name):
        path = self.root / "cases" / name
        path.mkdir(parents=True)
        return path

    def good_image(self):
        return sorted((self.images / "train" / "cat").iterdir())[0]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    (root / "mobilevit_utils").mkdir()  # a project: caches go to root/data
    (root / "pyproject.toml").write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MOBILEVIT_DATA_DIR", raising=False)
        patch.setenv("MOBILEVIT_ARTIFACTS", str(root / "artifacts"))
        probe = Probe(root)
        status = cli.main([str(a) for a in _train(probe.images, probe.run)])
        assert status == 0 and training.run_finished(probe.run)
        yield probe


# --------------------------------------------------------------------------------------------
# The cases: (name, setup(probe) -> (command, output folders, check of a right result or None))


def _train(data, out, *flags):
    """A quick train of one epoch (the probe's run was made with this command)."""
    command = ["train", "--preset", "quick", "--data-dir", data, "--out", out, "--epochs", "1"]
    return [*command, "--batch-size", "8", *flags]


def bad_image_tree(probe, name, payload):
    tree = image_tree(probe.folder(name) / "data")
    (tree / "train" / "cat" / "bad.jpg").write_bytes(payload)
    return tree


def case_truncated_jpeg(probe):
    tree = bad_image_tree(probe, "truncated", jpeg_bytes()[:300])
    return _train(tree, tree.parent / "run"), [tree.parent / "run"], None


def case_zero_byte_image(probe):
    tree = bad_image_tree(probe, "zero", b"")
    return _train(tree, tree.parent / "run"), [tree.parent / "run"], None


def case_text_named_jpg(probe):
    tree = bad_image_tree(probe, "text", b"these are my notes, not a photo\n")
    return _train(tree, tree.parent / "run"), [tree.parent / "run"], None


def case_data_dir_is_a_file(probe):
    folder = probe.folder("file")
    (folder / "photos.txt").write_text("not a folder")
    return _train(folder / "photos.txt", folder / "run"), [folder / "run"], None


def case_empty_class_folder(probe):
    tree = image_tree(probe.folder("empty_class") / "data")
    (tree / "train" / "bird").mkdir()
    return _train(tree, tree.parent / "run"), [tree.parent / "run"], None


def archive_folder(probe, name, members):
    """A data folder holding only an archive (`--data-dir` names folders; train extracts the
    archive it finds in one)."""
    folder = probe.folder(name)
    (folder / "data").mkdir()
    tar_with(folder / "data" / "photos.tar", members)
    return folder


def some_members():
    return [(f"images/train/{c}/{i}.jpg", jpeg_bytes()) for c in CLASSES for i in range(3)]


def case_tar_with_parent_entries(probe):
    folder = archive_folder(probe, "escape", [*some_members(), ("../../escaped.jpg", jpeg_bytes())])
    return _train(folder / "data", folder / "run"), [folder / "run"], no_extraction


def case_tar_with_absolute_symlink(probe):
    link = ("images/train/cat/x.jpg", ("link", "/etc/hosts"))
    folder = archive_folder(probe, "symlink", [*some_members(), link])
    return _train(folder / "data", folder / "run"), [folder / "run"], no_extraction


def case_tar_cut_mid_member(probe):
    folder = archive_folder(probe, "cut_tar", some_members())
    archive = folder / "data" / "photos.tar"
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2 + 200])
    return _train(folder / "data", folder / "run"), [folder / "run"], no_extraction


def no_extraction(probe, status, out, err):
    extracted = probe.root / "data" / "extracted"
    assert not extracted.exists() or not any(extracted.iterdir()), "half an extraction left"
    return None  # and the refusal is checked as any other


def case_out_is_the_data_with_overwrite(probe):
    tree = image_tree(probe.folder("own_data") / "mydata")
    return _train(tree, tree, "--overwrite"), [], None


def case_mistyped_data_dir_with_overwrite(probe):
    run = probe.folder("keepme") / "run"
    shutil.copytree(probe.run, run)
    return _train(probe.root / "imgaes", run, "--overwrite"), [], None


def case_overwrite_a_folder_of_the_users(probe):
    folder = probe.folder("notes")
    (folder / "todo.txt").write_text("mine")
    return _train(probe.images, folder, "--overwrite"), [], None


def case_resume_a_finished_run(probe):
    return _train(probe.images, probe.run, "--resume"), [], None


def case_resume_with_other_classes(probe):
    run = probe.folder("unfinished") / "run"
    shutil.copytree(probe.run, run)
    (run / "metadata.json").unlink()  # as if stopped after its epoch: its resume state only
    config = training.TrainConfig(**json.loads((run / "config.json").read_text()))
    dataset = data.load_dataset(probe.images, max_per_class=config.max_per_class)
    state = {"epoch": 1, "staged": {}, **journal.identity(config, dataset)}
    (run / "backup").mkdir()
    (run / "backup" / "state.json").write_text(json.dumps(state))
    other = image_tree(run.parent / "pets", classes=["dog", "frog", "horse"])
    return _train(other, run, "--resume"), [], None


def case_keras_zip_of_junk(probe):
    folder = probe.folder("junk_zip")
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("junk.bin", os.urandom(256))
    return ["predict", "--model", folder / "model.keras", probe.good_image()], [], None


def case_keras_zip_of_junk_export(probe):
    folder = probe.folder("junk_zip_export")
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
    command = ["export", "--model", folder / "model.keras", "--quantization", "fp32"]
    return [*command, "--out", folder / "tflite"], [folder / "tflite"], None


def case_truncated_checkpoint(probe):
    folder = probe.folder("cut_keras")
    blob = (probe.run / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(blob[: len(blob) // 3])
    shutil.copy(probe.run / "metadata.json", folder)
    return ["predict", "--model", folder / "model.keras", probe.good_image()], [], None


def case_foreign_lambda_model(probe):
    model = lambda_model(probe.folder("lambda") / "model.keras")
    return ["predict", "--model", model, probe.good_image()], [], None


def case_foreign_lambda_model_evaluate(probe):
    model = lambda_model(probe.folder("lambda_eval") / "model.keras")
    out = model.parent / "report"
    return ["evaluate", "--model", model, "--data-dir", probe.images, "--out", out], [out], None


def case_foreign_lambda_model_export(probe):
    model = lambda_model(probe.folder("lambda_export") / "model.keras")
    out = model.parent / "tflite"
    return ["export", "--model", model, "--quantization", "fp32", "--out", out], [out], None


def case_sidecar_of_another_model(probe):
    folder = probe.folder("sidecar")
    shutil.copy(probe.run / "model.keras", folder)
    metadata = json.loads((probe.run / "metadata.json").read_text())
    metadata["class_names"] = ["yes", "no"]  # another model's: 2 classes for 3 outputs
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return ["predict", "--model", folder / "model.keras", probe.good_image()], [], None


def case_metadata_not_json(probe):
    folder = probe.folder("bad_metadata")
    shutil.copy(probe.run / "model.keras", folder)
    (folder / "metadata.json").write_text("{'class_names': oops")
    return ["predict", "--model", folder / "model.keras", probe.good_image()], [], None


def case_predict_right(probe):
    return ["predict", "--model", probe.run / "model.keras", probe.good_image()], [], predicted


def case_predict_folder_with_damaged_files(probe):
    folder = probe.folder("mixed")
    shutil.copy(probe.good_image(), folder / "good.png")
    (folder / "cut.jpg").write_bytes(jpeg_bytes()[:300])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    return ["predict", "--model", probe.run / "model.keras", folder], [], predicted


def case_evaluate_with_an_empty_class_folder(probe):
    tree = image_tree(probe.folder("eval_empty") / "data", per_class=4)
    (tree / "train" / "dog").rename(tree.parent / "moved")
    (tree / "train" / "dog").mkdir()  # the model's class, with no images here
    out = tree.parent / "report"
    command = ["evaluate", "--model", probe.run / "model.keras", "--data-dir", tree]
    return [*command, "--split", "val", "--out", out], [out], evaluated


def case_evaluate_a_tar_with_parent_entries(probe):
    folder = archive_folder(probe, "eval_escape", [("../../x.jpg", jpeg_bytes())])
    command = ["evaluate", "--model", probe.run / "model.keras", "--data-dir", folder / "data"]
    return [*command, "--out", folder / "report"], [folder / "report"], no_extraction


def predicted(probe, status, out, err):
    """Right: each readable image's top class is the model's own, each unreadable one named in
    an error line (exit 1), nothing else on stderr."""
    model, metadata = training.load_run(probe.run, compile=False)
    lines = [line for line in out.splitlines() if ": " in line]
    assert lines, out
    for line in lines:
        path, top = line.split(": ", 1)
        name, probability = top.split(", ")[0].rsplit(" ", 1)
        from PIL import Image

        pixels = np.asarray(Image.open(path).convert("RGB"), "float32")[None]
        logits = np.asarray(model(pixels, training=False))[0]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert name == metadata["class_names"][int(expected.argmax())], (line, expected)
        assert abs(float(probability) - expected.max()) < 2e-3, (line, expected)
    errors = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in errors), err
    assert status == (1 if errors else 0)
    return True


def evaluated(probe, status, out, err):
    assert status == 0, err
    assert "accuracy=" in out and "have no images here (dog)" in out, out
    return True


CASES = {name[5:]: case for name, case in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parametrize("name", CASES)
def test_probe(probe, capsys, monkeypatch, name):
    monkeypatch.chdir(probe.root)
    monkeypatch.delenv("MOBILEVIT_DATA_DIR", raising=False)
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(probe.root / "artifacts"))
    command, outputs, right = CASES[name](probe)
    before = snapshot(probe.root)
    status, out, err = run_cli(capsys, command)
    allowed = tuple(Path(o).relative_to(probe.root).as_posix() + "/" for o in outputs)
    assert not changes(before, snapshot(probe.root), allowed), (name, err)
    if right is not None and right(probe, status, out, err):
        return
    assert one_line_error(status, err), f"{name}: status {status}, stderr:\n{err}"
    if name.startswith("resume_with_other"):
        assert "classes airplane, cat, dog" in err, err


def test_a_killed_train_changes_nothing_outside_its_folder(probe, capsys, monkeypatch):
    """A real train killed at a random moment once it has marked its run folder (from then on
    it writes there, up to its end); then what a person would run next on its folder: right,
    or one line. A train that ends before its kill proves nothing: tried again with shorter
    delays (the last try kills as soon as the marker appears)."""
    monkeypatch.chdir(probe.root)
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(probe.root / "artifacts"))
    rng = random.Random()
    for attempt, within in enumerate((4.0, 1.0, 0.0)):
        run = probe.root / "cases" / f"killed-{attempt}" / "run"
        before = snapshot(probe.root)
        process = subprocess.Popen(
            [sys.executable, "-m", "mobilevit_utils", *map(str, _train(probe.images, run))],
            cwd=probe.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOBILEVIT_ARTIFACTS": str(probe.root / "artifacts")},
        )
        while not (run / runs.MARKER).exists() and process.poll() is None:
            time.sleep(0.005)
        delay = rng.uniform(0, within)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
            break
        assert process.returncode == 0 and (run / runs.MARKER).exists(), process.returncode
    else:
        pytest.fail("every train ended before its kill, even one killed at once")
    moment = f"killed {delay:.2f} s after the marker appeared"
    allowed = (f"cases/killed-{attempt}/run/",)
    assert not changes(before, snapshot(probe.root), allowed), moment
    for command in (
        ["predict", "--model", run / "model.keras", probe.good_image()],
        _train(probe.images, run),  # neither --resume nor --overwrite
    ):
        status, out, err = run_cli(capsys, command)
        # Right (its first epoch's checkpoint predicts; a train that found nothing ran), or one line.
        right = status == 0 and out.strip() and not err.strip()
        assert right or one_line_error(status, err), (moment, command, err)
