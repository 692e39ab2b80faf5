import os
import sys
from pathlib import Path

# Tests run on the TensorFlow backend unless the caller chose another one; backend-specific
# checks start their own subprocesses (tests/integration/test_backends.py, tests/integration/test_distribution.py).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Run in a throwaway 'project' so caches and extractions land in tmp_path/data, with no
    local dataset found (MOBILEVIT_DATA_DIR unset) and artifacts under tmp_path/artifacts."""
    (tmp_path / "mobilevit_utils").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOBILEVIT_DATA_DIR", raising=False)
    monkeypatch.setenv("MOBILEVIT_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder with a briefly trained model on the synthetic, learnable dataset."""
    from helpers import tiny_dataset

    from mobilevit_utils import training

    run = tmp_path_factory.mktemp("trained") / "run"
    lines = []
    training.train(
        "quick",
        run_dir=run,
        dataset=tiny_dataset(n_per_class=16),
        epochs=3,
        batch_size=8,
        print_fn=lines.append,
    )
    (run.parent / "printed.txt").write_text("\n".join(lines) + "\n")  # what the run printed
    return run


LANES = {
    "unit": "fast, in-process checks of one module",
    "integration": "trains, exports or runs the CLI and backends in subprocesses",
    "repo": "the repository itself: docs, site, notebook text, packaging, structure",
}


def pytest_configure(config):
    for lane, what in LANES.items():
        config.addinivalue_line("markers", f"{lane}: {what} (tests/{lane}/)")


def pytest_collection_modifyitems(items):
    """Each test is marked with its folder's lane: `-m unit`, `-m "not integration"`."""
    for item in items:
        lane = Path(str(item.path)).parent.name
        if lane in LANES:
            item.add_marker(getattr(pytest.mark, lane))
