"""Released checkpoints by name, from any directory: the copy installed with the package, else
a download checked against the recorded hash and cached beside Keras' downloads."""

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from mobilevit_utils import presets

ROOT = Path(__file__).resolve().parents[2]
RELEASED = [name for name, preset in presets.PRESETS.items() if preset.checkpoint]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", RELEASED)
def test_recorded_hashes_are_those_of_the_committed_files(name):
    preset = presets.PRESETS[name]
    for file in presets.FILES:
        assert preset.sha256[file] == sha256(ROOT / preset.checkpoint / file), (
            f"{preset.checkpoint}/{file} changed: record its new sha256 in presets.PRESETS"
        )


def test_released_checkpoints_resolve_outside_the_repository_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    for name in RELEASED:
        folder = presets.checkpoint_dir(name, download_from=None)
        assert folder.resolve() == (ROOT / presets.PRESETS[name].checkpoint).resolve()
    assert not (tmp_path / "keras-home").exists()  # nothing downloaded, nothing cached


@pytest.fixture
def published(trained_run, tmp_path, monkeypatch):
    """A package installed without its checkpoints, and a "repository" serving a release."""
    name = "mobilevit_v2_050_cifar10"
    preset = presets.PRESETS[name]
    served = tmp_path / "repo" / "raw" / "main" / preset.checkpoint
    served.mkdir(parents=True)
    for file in presets.FILES:
        shutil.copy2(trained_run / file, served / file)
    hashes = {file: sha256(served / file) for file in presets.FILES}
    monkeypatch.setitem(presets.PRESETS, name, dataclasses.replace(preset, sha256=hashes))
    monkeypatch.setattr(presets, "packaged_checkpoints", lambda: tmp_path / "not-installed")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return name, served, (tmp_path / "repo").as_uri()


def test_a_missing_release_downloads_once_with_its_hash_checked(published):
    name, served, url = published
    with pytest.raises(FileNotFoundError, match="not installed with the package"):
        presets.checkpoint_dir(name, download_from=None)
    folder = presets.checkpoint_dir(name, download_from=url)
    assert folder == presets.cache_dir() / Path(presets.PRESETS[name].checkpoint).name
    assert sha256(folder / "model.keras") == sha256(served / "model.keras")
    shutil.rmtree(served)  # cached: no second download
    assert presets.checkpoint_dir(name, download_from=url) == folder


def test_a_download_that_does_not_match_its_hash_is_refused(published):
    name, served, url = published
    (served / "model.keras").write_bytes(b"not the released weights")
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        presets.checkpoint_dir(name, download_from=url)
    assert not (presets.cache_dir() / Path(served).name / "model.keras").exists()
