"""Training runs on every backend, and scales out over two logical CPU devices."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import backend_env

SCRIPT = Path(__file__).with_name("distributed_train.py")


@pytest.mark.parametrize("backend, devices", [("tensorflow", 2), ("jax", 2), ("torch", 1)])
def test_training_on_backend(backend, devices, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = backend_env(backend, ["--xla_force_host_platform_device_count=2"])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"{backend}: trained on {devices} device(s)" in result.stdout
    assert (tmp_path / "run" / "model.keras").exists()
