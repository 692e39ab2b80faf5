"""Every committed `checkpoints/*/model.keras` still loads with safe_mode=True into this
package's layers and predicts what it predicted before the layers were reorganised: saved files
name layers by registered name ("mobilevit>MobileViTBlock"), config keys and weight paths, so
those must not change."""

from pathlib import Path

import keras
import numpy as np
import pytest

import mobilevit_utils  # noqa: F401  (registers the layers)
from mobilevit_utils import block_kinds

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = sorted(ROOT.glob("checkpoints/*/model.keras"))

# Logits for `images()`, computed with mobilevit_utils/layers.py before it became a package.
# (A checkpoint committed later is checked for loading and round trips only.)
EXPECTED = {
    "mobilevit_v2_050_cifar10": [
        [-0.0497, -0.8836, -0.4159, -0.1469, -0.3381, -1.1927, 3.7107, -1.1696, -0.9589, -0.1682],
        [0.3423, -1.1446, 0.3155, 0.4383, 0.0461, -1.1328, 2.589, -1.3768, -1.3483, -0.5172],
    ],
    "mobilevit_v2_050_cifar10_heldout": [
        [-0.9188, -0.4677, 2.2861, -0.3697, -0.7286, -0.774, 2.3618, -0.9254, -1.1267, -0.4459],
        [-0.7778, -0.5946, 2.9333, 0.7147, -0.7734, -1.1115, 1.1818, -1.828, -1.3428, -1.1776],
    ],
    "mobilevit_xxs_cifar10": [
        [0.181, -0.9474, 0.9828, -0.7721, -0.6137, -0.5368, 3.7578, -0.6548, -0.0199, -0.6578],
        [0.5265, -1.0718, 0.6727, -0.7593, -0.6866, -0.7192, 3.8835, -0.745, -0.3528, -0.6525],
    ],
}


def images():
    return np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")


def logits(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_the_recorded_checkpoints_are_committed():
    assert set(EXPECTED) <= {path.parent.name for path in CHECKPOINTS}


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda path: path.parent.name)
def test_committed_checkpoint_loads_and_predicts_as_before(path, tmp_path):
    model = keras.saving.load_model(path, safe_mode=True)
    ours = [
        layer
        for layer in model._flatten_layers()
        if type(layer).__module__.startswith("mobilevit_utils.layers")
    ]
    assert ours, "no layer of the package was rebuilt"
    for layer in ours:
        assert keras.saving.get_registered_name(type(layer)) == f"mobilevit>{type(layer).__name__}"
    assert any(kind.role == "attention" for kind in block_kinds.block_kinds_in(model))
    x = images()
    got = logits(model, x)
    if path.parent.name in EXPECTED:
        np.testing.assert_allclose(got, EXPECTED[path.parent.name], atol=1e-3)
    model.save(tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
    np.testing.assert_array_equal(logits(again, x), got)
    assert [w.path for w in again.weights] == [w.path for w in model.weights]
