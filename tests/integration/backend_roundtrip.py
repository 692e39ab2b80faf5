"""Run under one Keras backend (KERAS_BACKEND set by the caller): build, train one step, save,
reload, and load every model that other backends saved in the same folder.

Usage: python tests/integration/backend_roundtrip.py OUT_DIR
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np

from mobilevit_utils import models

out_dir = Path(sys.argv[1])
backend = keras.backend.backend()
assert backend == os.environ["KERAS_BACKEND"], backend
keras.utils.set_random_seed(0)

x = np.random.default_rng(0).uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
y = np.arange(8) % 10

# The CIFAR layout and its structural variants: v3-style blocks, dynamic convolution and
# MobileViTv2's separable attention.
VARIANTS = ["xxs_cifar", "xxs_cifar_v3", "xxs_cifar_dynconv", "v2_050_cifar"]


def roundtrip(variant):
    model = models.build_mobilevit(variant, num_classes=10, include_rescaling=True)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.optimizer.build(model.trainable_variables)  # TensorFlow then traces the step once
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), loss
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert changed > 0.5 * len(before), f"only {changed}/{len(before)} weights changed"

    expected = keras.ops.convert_to_numpy(model(x, training=False))
    path = out_dir / f"{backend}-{variant}.keras"
    model.save(path)
    np.save(out_dir / f"{backend}-{variant}_logits.npy", expected)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    diff = np.abs(keras.ops.convert_to_numpy(reloaded(x, training=False)) - expected).max()
    assert diff == 0.0, f"{backend} {variant}: reload changed outputs by {diff}"
    print(f"{backend}: {variant} trained one epoch (loss {loss:.3f}), saved and reloaded exactly")

    for other in sorted(out_dir.glob(f"*-{variant}.keras")):
        if other.stem.startswith(f"{backend}-"):
            continue
        theirs = keras.saving.load_model(other, safe_mode=True)
        want = np.load(out_dir / f"{other.stem}_logits.npy")
        diff = np.abs(keras.ops.convert_to_numpy(theirs(x, training=False)) - want).max()
        assert diff <= 1e-4, f"{other.stem} -> {backend}: max |difference| {diff}"
        print(f"{other.stem} -> {backend}: max |difference| {diff:.2e}")


for variant in VARIANTS:
    roundtrip(variant)
