"""examples/photos_to_phone.sh as a new user runs it: `pip install` of the clone (not editable)
into a fresh virtual environment, then the script with that environment's `mobilevit` command,
in a folder outside the clone, offline (a network namespace of its own, `unshare -n`, where it
can be made), with HOME elsewhere and no MOBILEVIT_DATA_DIR: no project-root, `../shared` or
`~/.keras` lookups can help it. Short epochs (HEAD_EPOCHS=1 EPOCHS=2); the script's step times
and the install's are printed (`pytest -s`)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.photos_to_phone import CLASSES, SCRIPT, STEP_LINE, make_photos, run_script  # noqa: E402

PRECISIONS = ("fp32", "dynamic", "fp16", "int8")
NOT_OUTPUTS = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
SCRIPT_WORDS = ("my_photos", "new_photos", "mine")  # its folders, run name and exports
SCRIPT_FILES = {"predictions.csv"}


def digests(folder):
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }


def written_inside(root, since):
    """Files under `root` modified since `since` (a time.time()) that the script could have
    written: its run, report, predictions, exports, or a cache of its photos. (Other files may
    change meanwhile: the tree is edited, and other tests run, at the same time.)"""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in NOT_OUTPUTS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(root)
            # The script's own names (its run is "mine"), not the kinds of file other tests
            # write into the clone at the same time (a solution's run, a notebook's card).
            ours = any(word in part for part in relative.parts for word in SCRIPT_WORDS)
            if not ours and name not in SCRIPT_FILES:
                continue
            try:  # another test's file can be renamed away meanwhile
                if path.stat().st_mtime < since:
                    continue
                # notebook 07 writes a predictions.csv too: whose photos does it list?
                ours = ours or "new_photos" in path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if ours:
                found.append(relative.as_posix())
    return found


def offline_prefix():
    """`unshare -n`: the command runs with no network at all, where that can be set up."""
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n"]
    return []


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtual environment with `pip install <clone>` (pip's own cache and index
    settings, as a user's)."""
    folder = tmp_path_factory.mktemp("fresh") / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    pip = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-3000:]
    print(f"\npython -m venv + pip install {ROOT.name}: {time.perf_counter() - start:.0f} s")
    return folder


def user_environment(venv, home):
    """The environment of a user who installed the package: its `mobilevit` first on PATH,
    HOME elsewhere, no project variables, offline."""
    drop = ("MOBILEVIT_", "PYTHON", "VIRTUAL_ENV", "KERAS_", "CONDA")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(proxy, None)
    env.update(
        HOME=str(home),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(venv),
        HF_HUB_OFFLINE="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        HEAD_EPOCHS="1",
        EPOCHS="2",
    )
    return env


def test_photos_to_phone_outside_the_clone_offline(venv, tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    made = make_photos(work)
    photos_before = digests(work / "my_photos") | digests(work / "new_photos")
    checkpoints_before = digests(ROOT / "checkpoints")
    env = user_environment(venv, home)
    assert shutil.which("mobilevit", path=env["PATH"]) == str(venv / "bin" / "mobilevit")
    since = time.time()

    status, output, seconds = run_script(work, env, [*offline_prefix(), "bash", str(SCRIPT)])
    steps = STEP_LINE.findall(output)
    print("\n".join(f"{step}: {s} s (exit status {code})" for step, code, s in steps))
    print(f"examples/photos_to_phone.sh: {seconds:.0f} s in all")
    assert status == 0, output[-5000:]
    assert {step: int(code) for step, code, _ in steps} == {
        "train": 0,
        "evaluate": 0,
        "predict": 1,  # one unreadable file: named, the others still predicted
        "export": 0,
    }, output[-5000:]

    # Train: the first line says the size and how images are fitted to it.
    assert output.startswith("input: 32x32 (mobilevit_xxs_cifar10's input"), output[:500]
    assert "stretched to that shape" in output.splitlines()[0]
    card = (work / "runs" / "mine" / "MODEL_CARD.md").read_text()
    assert "python -m mobilevit_utils train --preset finetune" in card
    assert "--data-dir my_photos --out runs/mine" in card and "(Wilson)" in card
    metadata = json.loads((work / "runs" / "mine" / "metadata.json").read_text())
    assert metadata["train_images"] + metadata["val_images"] == len(made["train"])  # more/ too
    assert metadata["data_dir"] == str((work / "my_photos").resolve())

    # Evaluate: the card with the scores on the held-out fifth.
    assert "on 16 images" in (work / "reports" / "mine" / "MODEL_CARD.md").read_text()

    # Predict: the broken file named, a row for every good photo.
    assert "broken.jpg" in output and "1 of 6 input(s) failed" in output
    rows = (work / "predictions.csv").read_text().splitlines()[1:]
    predicted = sorted(row.split(",")[0] for row in rows)
    assert predicted == sorted(p.relative_to(work).as_posix() for p in made["new"])

    # Export: calibrated on the training photos, files named after the run, sidecars that say
    # what the app must do.
    assert f"int8 calibration: 64 of the 64 training images of {work / 'my_photos'}" in output
    scored = re.findall(r"^(fp32|dynamic|fp16|int8) .* ok, .* (\d\.\d{4})$", output, re.M)
    assert [precision for precision, _ in scored] == list(PRECISIONS), output[-3000:]
    names = {path.name for path in (work / "tflite").iterdir()}
    for precision in PRECISIONS:
        assert {f"mine_{precision}.tflite", f"mine_{precision}.json"} <= names
        sidecar = json.loads((work / "tflite" / f"mine_{precision}.json").read_text())
        assert sidecar["class_names"] == sorted(name for name, _, _ in CLASSES)
        assert sidecar["input_shape"] == [32, 32, 3] and sidecar["name"] == "mine"
        assert sidecar["preprocessing"]["channel_order"] == "RGB"
        assert sidecar["resize"].startswith("resize the whole image to 32x32")
        assert sidecar["model_card"]["fine_tuned_from"] == "mobilevit_xxs_cifar10"
        assert "accuracy_95_interval" in sidecar["model_card"]

    # The photos untouched; nothing written inside the clone.
    assert digests(work / "my_photos") | digests(work / "new_photos") == photos_before
    assert digests(ROOT / "checkpoints") == checkpoints_before
    assert written_inside(ROOT, since) == []
