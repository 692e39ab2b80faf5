"""Every training recipe (quick, cpu, gpu) trains a short epoch on every backend, reloads with
safe_mode=True as a float32 model, evaluates, and exports to TFLite (TensorFlow; once per model
and precision).

Each backend runs in its own process (the backend is chosen at import); see
tests/integration/preset_runs.py for what is checked.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import backend_env

from mobilevit_utils import training

SCRIPT = Path(__file__).with_name("preset_runs.py")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_recipe_trains_reloads_and_evaluates(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e .[backends])")
    env = {**backend_env(backend), "MOBILEVIT_ARTIFACTS": str(tmp_path / "artifacts")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=SCRIPT.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    for recipe in training.RECIPES:
        assert f"{backend} {recipe}: trained one epoch" in result.stdout
    assert (
        f"{backend} levers: weight averaging and alternating flip trained two epochs"
        in result.stdout
    )
    if backend == "tensorflow":  # each model and precision among the recipes, once
        kinds = {(r.model, r.mixed_precision): n for n, r in reversed(training.RECIPES.items())}
        for recipe in kinds.values():
            assert f"{backend} {recipe}: exported to TFLite fp32" in result.stdout
    print(result.stdout)
