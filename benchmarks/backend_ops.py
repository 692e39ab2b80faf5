"""Where a backend spends the MobileViT training step: forward + backward time of each kind of
layer the `xxs_cifar` model is made of, at the shapes it runs them, on this backend.

Run it once per backend and compare the columns; it explains why one backend trains slower
than another (benchmarks/results/backend_ops.txt):

    python benchmarks/backend_ops.py
    KERAS_BACKEND=jax python benchmarks/backend_ops.py
    KERAS_BACKEND=torch python benchmarks/backend_ops.py

Each row is the best of three timings of --repeats calls of a compiled (tf.function / jax.jit)
or eager (torch) function returning the gradient of the summed output with respect to the
input and the layer's weights.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from benchmarks.train_throughput import best_seconds  # noqa: E402
from mobilevit_utils import layers as mv  # noqa: E402

# (name, layer factory, input shape without batch): the layer kinds of xxs_cifar's largest
# stages, at the resolutions they run at.
CASES = [
    (
        "depthwise 3x3, 32x32x32",
        lambda: layers.DepthwiseConv2D(3, padding="same", use_bias=False),
        (32, 32, 32),
    ),
    (
        "depthwise 3x3, 16x16x48",
        lambda: layers.DepthwiseConv2D(3, padding="same", use_bias=False),
        (16, 16, 48),
    ),
    ("pointwise 1x1, 32x32 16->32", lambda: layers.Conv2D(32, 1, use_bias=False), (32, 32, 16)),
    ("pointwise 1x1, 16x16 48->96", lambda: layers.Conv2D(96, 1, use_bias=False), (16, 16, 48)),
    (
        "dense 3x3, 8x8 48->48",
        lambda: layers.Conv2D(48, 3, padding="same", use_bias=False),
        (8, 8, 48),
    ),
    ("batch norm (training), 32x32x32", lambda: mv.BatchNorm(), (32, 32, 32)),
    ("attention, 4x16 tokens x 64", lambda: mv.MHSA(4, 64), (16, 64)),
]


def step_function(layer, x):
    """A compiled function returning d(sum(layer(x)))/d(x, weights)."""
    backend = keras.backend.backend()
    weights = layer.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True))
            return tape.gradient(loss, [x, *weights])

        return lambda: [g.numpy() for g in step(x)]
    if backend == "jax":
        import jax

        values = [w.value for w in weights]
        non_trainable = [w.value for w in layer.non_trainable_variables]

        kwargs = {"training": True} if layer._call_has_training_arg else {}

        def loss(x, values):
            out, _ = layer.stateless_call(values, non_trainable, x, **kwargs)
            return out.sum()

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda: jax.block_until_ready(grad(x, values))
    import torch

    x = x.clone().requires_grad_(True)

    def step():
        layer.zero_grad() if hasattr(layer, "zero_grad") else None
        out = layer(x, training=True).sum()
        return torch.autograd.grad(out, [x, *[w.value for w in weights]])

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    print(
        f"backend {keras.backend.backend()}, batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores; milliseconds per forward + backward, best of three"
    )
    total = 0.0
    for name, make, shape in CASES:
        layer = make()
        x = keras.ops.convert_to_tensor(
            np.random.default_rng(0).normal(size=(args.batch_size, *shape)).astype("float32")
        )
        layer.build(x.shape)
        run = step_function(layer, x)
        run()  # trace and compile

        def repeat(run=run):
            for _ in range(args.repeats):
                run()

        ms = 1000 * best_seconds(repeat) / args.repeats
        total += ms
        print(f"{name:34s} {ms:8.2f} ms")
    print(f"{'sum':34s} {total:8.2f} ms")


if __name__ == "__main__":
    main()
