"""Training throughput of a MobileViT variant on this machine and backend.

Prints images/s of the training step (forward + backward + AdamW update, random data so the
input pipeline is not measured; best of three windows of --steps steps), the float32 matmul
throughput measured in the same run, and the fraction of it the training step reaches, counting
3 x forward MACs x 2 FLOPs per image.

    KERAS_BACKEND=jax python benchmarks/train_throughput.py --variant xxs_cifar --batch-size 128
    python benchmarks/train_throughput.py --strides 2 1 1 2 2 1      # a variant's strides, edited
    python benchmarks/train_throughput.py --dtype-policy mixed_bfloat16
    python benchmarks/train_throughput.py --jit-compile      # the step compiled by XLA
    python benchmarks/train_throughput.py --profile          # where the step's time goes (TF)
    python benchmarks/train_throughput.py --stock-batchnorm  # keras.layers.BatchNormalization's path
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mobilevit_utils import models  # noqa: E402
from mobilevit_utils.layers import BatchNorm  # noqa: E402


def best_seconds(run, windows=3):
    """The shortest of `windows` timings of `run()`: neighbours on a shared machine only ever
    slow a window down."""
    best = float("inf")
    for _ in range(windows):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops(n=1024, repeats=20):
    """Sustained float32 matmul FLOP/s of the backend (best of three timed runs)."""
    a = keras.random.normal((n, n), seed=1)
    b = keras.random.normal((n, n), seed=2)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b))  # warm-up / compile

    def run():
        c = a
        for _ in range(repeats):
            c = keras.ops.matmul(a, b)
        keras.ops.convert_to_numpy(c)

    return 2 * n**3 * repeats / best_seconds(run)


def random_batch(batch_size, shape, num_classes=10):
    """Random images and labels: the step's cost does not depend on the pixels."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch_size, *shape)).astype("float32")
    return x, rng.integers(0, num_classes, size=(batch_size,))


def train_images_per_second(
    variant, batch_size, steps, input_size=None, strides=None, jit_compile=False
):
    config = models.get_variant(variant)
    if strides:
        config = config.with_strides(tuple(strides))
    shape = (input_size, input_size, 3) if input_size else config.default_input_shape
    model = models.build_mobilevit(config, num_classes=10, input_shape=shape)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    x, y = random_batch(batch_size, shape)
    for _ in range(2):  # compile and warm up
        model.train_on_batch(x, y)

    def run():
        for _ in range(steps):
            model.train_on_batch(x, y)

    return batch_size * steps / best_seconds(run), models.count_macs(model), model


def profile_op_types(model, x, y, steps, top=15):
    """Self-time per TensorFlow op type over `steps` training steps, largest first."""
    import glob
    import json
    import tempfile

    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        trace = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
        data, _ = plugin.xspace_to_tools_data([trace], "framework_op_stats", {})
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    totals = {}
    for row in table["rows"]:
        values = dict(zip(columns, (cell.get("v") for cell in row["c"])))
        op_type = values["type"]
        totals[op_type] = totals.get(op_type, 0.0) + values["total_self_time"]
    busy = sum(t for op, t in totals.items() if op != "IDLE")
    print(
        f"profile             {steps} steps, {busy / steps / 1e3:.0f} ms busy per step "
        "(op self-time, profiler overhead included; IDLE = a core waiting)"
    )
    for op_type, total in sorted(totals.items(), key=lambda item: -item[1])[:top]:
        share = f"{100 * total / busy:5.1f} % of busy" if op_type != "IDLE" else ""
        print(f"  {op_type:44s} {total / steps / 1e3:7.1f} ms  {share}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xxs_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument(
        "--strides",
        type=int,
        nargs=6,
        metavar="S",
        help="replace the variant's strides (stem, stage1..stage5)",
    )
    parser.add_argument("--dtype-policy", default=None, help="e.g. mixed_bfloat16")
    parser.add_argument(
        "--stock-batchnorm",
        action="store_true",
        help="train with keras.layers.BatchNormalization's unfused ops",
    )
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="compile the training step with XLA (Keras' default on CPU: off)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print time per op type (TensorFlow backend)"
    )
    args = parser.parse_args()
    if args.dtype_policy:
        keras.config.set_dtype_policy(args.dtype_policy)
    if args.stock_batchnorm:
        BatchNorm.fused_on_tensorflow = False
    if args.profile and keras.backend.backend() != "tensorflow":
        raise SystemExit(
            "--profile reads TensorFlow's profiler: run with KERAS_BACKEND=tensorflow."
        )

    # Measured before and after the training step, keeping the higher: on a shared machine a
    # neighbour's burst during one measurement would otherwise inflate the fraction below.
    peak = matmul_flops()
    images_per_s, macs, model = train_images_per_second(
        args.variant, args.batch_size, args.steps, args.input_size, args.strides, args.jit_compile
    )
    peak = max(peak, matmul_flops())
    achieved = images_per_s * macs * 2 * 3
    print(f"backend             {keras.backend.backend()} ({os.cpu_count()} CPU cores)")
    strides = tuple(args.strides or models.get_variant(args.variant).strides)
    print(
        f"model               {model.name}, strides {strides}, "
        f"input {model.input_shape[1:]}, batch {args.batch_size}, dtype policy {keras.config.dtype_policy().name}"
        + (", XLA" if args.jit_compile else "")
    )
    fused = not args.stock_batchnorm and keras.backend.backend() == "tensorflow"
    norm = "fused on TensorFlow" if fused else "keras.layers.BatchNormalization path"
    print(f"batch norm          {norm}")
    print(f"forward MACs/image  {macs / 1e6:.1f} M")
    print(f"training            {images_per_s:.1f} images/s")
    print(f"                    {3600 * images_per_s / 45000:.1f} epochs/hour of 45,000 images")
    print(f"matmul float32      {peak / 1e9:.1f} GFLOP/s (1024x1024)")
    print(
        f"training FLOP/s     {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f} % of matmul"
    )
    if args.profile:
        profile_op_types(model, *random_batch(args.batch_size, model.input_shape[1:]), steps=5)


if __name__ == "__main__":
    main()
