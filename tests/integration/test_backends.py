"""The same model code trains, saves and reloads on TensorFlow, JAX and PyTorch, and a `.keras`
file saved by one backend loads in another with the same outputs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import backend_env

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
SCRIPT = Path(__file__).with_name("backend_roundtrip.py")


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("backends")


@pytest.mark.parametrize("backend", list(BACKENDS))  # order matters: later ones load earlier files
def test_train_save_reload_across_backends(backend, shared_dir):
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"{backend} is not installed (pip install -e .[backends])")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(shared_dir)],
        env=backend_env(backend),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for variant in ("xxs_cifar", "xxs_cifar_v3", "xxs_cifar_dynconv", "v2_050_cifar"):
        assert f"{backend}: {variant} trained one epoch" in result.stdout
    print(result.stdout)


def test_logits_on_another_backend(shared_dir):
    """inference.logits_on_backend runs a saved model in a fresh process on another backend."""
    import numpy as np

    from mobilevit_utils import inference

    saved = shared_dir / "tensorflow-xxs_cifar.keras"
    if not saved.exists() or importlib.util.find_spec("torch") is None:
        pytest.skip("needs the TensorFlow round trip above and PyTorch")
    x = np.random.default_rng(0).uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
    logits = inference.logits_on_backend(saved, x, "torch")
    np.testing.assert_allclose(
        logits, np.load(shared_dir / "tensorflow-xxs_cifar_logits.npy"), atol=1e-4
    )
