"""pyproject.toml, environment.yml and the Makefile describe the same environment."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def environment_pip_entries():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    return [m.group(1) for line in lines if (m := re.match(r"\s+- (\S.*?)\s*(#.*)?$", line))]


def test_environment_pins_match_pyproject():
    project = pyproject()["project"]
    pins = {d for d in project["dependencies"] if "==" in d}
    pins |= {d for deps in project["optional-dependencies"].values() for d in deps if "==" in d}
    env_pins = {e for e in environment_pip_entries() if "==" in e}
    assert env_pins == pins


def test_environment_lists_only_what_pyproject_requires():
    """environment.yml's explicit pip entries (pins and optuna) are dependencies in pyproject."""
    project = pyproject()["project"]
    required = set(project["dependencies"])
    required |= {d for deps in project["optional-dependencies"].values() for d in deps}
    entries = environment_pip_entries()
    explicit = set(entries[entries.index("pip:") + 1 :]) - {
        e for e in entries if e.startswith("-e ")
    }
    assert explicit <= required
    assert "optuna>=4.0" in explicit


def test_environment_and_makefile_install_the_same_extras():
    extras = set(pyproject()["project"]["optional-dependencies"])
    env_extras = next(e for e in environment_pip_entries() if e.startswith("-e ."))
    make_extras = re.search(r"^EXTRAS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert set(env_extras[len("-e .[") : -1].split(",")) == extras
    assert set(make_extras.split(",")) == extras


def test_makefile_installs_the_pinned_torch_first():
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.index('"torch==2.13.0"') < makefile.index('-e ".[$(EXTRAS)]"')


def test_version_check_warns_about_untested_versions(monkeypatch):
    import pytest

    from mobilevit_utils import environment

    versions = {"keras": "3.15.1", "tensorflow": "2.21.0", "jax": None, "torch": None}
    monkeypatch.setattr(environment, "_version", lambda name: versions[name])
    assert environment.check_versions()["keras"] == "3.15.1"
    versions["tensorflow"] = "2.19.0"
    with pytest.warns(UserWarning, match="tensorflow 2.19.0 is installed"):
        environment.check_versions()
    versions["keras"] = "2.15.0"
    with pytest.raises(RuntimeError, match="needs Keras 3"):
        environment.check_versions()


def test_reference_targets_run_commands_the_tools_accept():
    """`make reference` and `make reference-final` (two hours each, never run in CI): their
    commands, as make would run them, parse with the train CLI and the release tool."""
    import shlex
    import subprocess
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import release_checkpoint

    from mobilevit_utils import cli, presets, training

    for target in ("reference", "reference-final"):
        dry = subprocess.run(
            ["make", "-n", "-o", "install", target, "DATA_DIR=../shared/data"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.replace("\\\n", " ")
        train = next(line for line in dry.splitlines() if " -m mobilevit_utils train " in line)
        words = shlex.split(train.split(" -m mobilevit_utils ", 1)[1].split(" 2>&1")[0])
        args = cli.build_parser().parse_args(words)
        assert args.preset == "cpu" and args.resume and args.data_dir == "../shared/data"
        release = next(line for line in dry.splitlines() if "release_checkpoint.py" in line)
        released = release_checkpoint.build_parser().parse_args(
            shlex.split(release.split("release_checkpoint.py", 1)[1])
        )
        assert released.run_dir == args.out and released.data_dir == "../shared/data"
        twin = presets.PRESETS[presets.PRESETS[training.RELEASED_PRESET].twin].checkpoint
        if target == "reference-final":
            assert cli.train_overrides(args) == {"validation_split": 0.0}
            assert released.twin == twin and released.out == release_checkpoint.DEFAULT_OUT
        else:  # the twin goes to its own folder and leaves the README's table alone
            assert released.out == twin and released.readme == ""


def test_pages_workflow_installs_the_site_pins_and_runs_the_builder():
    """The GitHub Pages workflow cannot run here: what it installs and runs is checked instead,
    against what `make site` does (the package with the `site` extra, LiteRT.js by npm ci, the
    Try it page required)."""
    import yaml

    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())["jobs"][
        "build"
    ]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert 'pip install ".[site]"' in runs
    assert "npm ci --prefix web" in runs
    assert "python tools/build_site.py --out _site --try-page require" in runs
    makefile = (ROOT / "Makefile").read_text()
    assert "--try-page require" in makefile and "npm ci --prefix web" in makefile
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    assert {"actions/setup-node", "actions/setup-python", "actions/upload-pages-artifact"} <= set(
        uses
    )


def test_every_subpackage_is_listed_for_installation():
    """pyproject lists the packages (the checkpoints folder is mapped into the package), so a
    new subpackage must be added there, or `pip install .` would leave it out."""
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "mobilevit_utils").rglob("__init__.py")
    }
    assert found | {"mobilevit_utils._checkpoints"} == listed
    assert pyproject()["tool"]["setuptools"]["package-dir"] == {
        "mobilevit_utils._checkpoints": "checkpoints"
    }
