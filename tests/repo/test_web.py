"""The Try it page's JavaScript (web/): its unit tests (`node --test web/test/`, Node's own runner,
no packages needed) check web/src/preprocess.js against what Pillow, NumPy and mobilevit_utils
make of the same images (web/test/fixtures.json, written by web/test/make_fixtures.py, which is
checked here to be current). Skipped without Node.js, except under CI (the variable CI set)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def test_preprocess_unit_tests_pass_in_node():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set and Node.js is missing")
        pytest.skip("Node.js is not installed")
    run = subprocess.run(
        [node, "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout


def test_fixtures_are_what_python_makes_now(tmp_path):
    """fixtures.json is what make_fixtures.py writes with this Pillow and this package: a change
    of either that moves a pixel shows here, not as a puzzling JavaScript failure."""
    out = tmp_path / "fixtures.json"
    script = WEB / "test" / "make_fixtures.py"
    made = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    fresh = json.loads(out.read_text())
    committed = json.loads((WEB / "test" / "fixtures.json").read_text())
    assert fresh["cases"] == committed["cases"] and fresh["images"] == committed["images"]


def test_lock_file_pins_litert_exactly():
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    pinned = package["dependencies"]["@litertjs/core"]
    assert pinned[0].isdigit(), "pin an exact version, not a range"
    assert lock["packages"]["node_modules/@litertjs/core"]["version"] == pinned
    assert lock["packages"]["node_modules/@litertjs/core"]["integrity"].startswith("sha512-")
