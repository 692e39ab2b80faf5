"""Peers, side by side: this project's MobileViT against kimm's (Keras 3) and Hugging Face
transformers' (PyTorch), at equal parameter counts, in one run on this machine.

For each input size and each model (MobileViT-XXS and MobileViTv2 width 0.5):
- parameters;
- training step: forward, backward and AdamW update on random data, best of three windows of
  --steps steps, in images/s (Keras: `train_on_batch`; transformers: a PyTorch loop);
- Keras inference: batch --batch-size, best of three windows, in images/s;
- TFLite fp32 at batch 1: `model.export(format="litert")` for both Keras implementations, the
  median of --runs calls of the ai_edge_litert interpreter on one thread, in ms.

At 256x256 every implementation builds the ImageNet layout (1,000 classes). At 32x32 this
project builds its CIFAR layouts (`xxs_cifar`, `v2_050_cifar`: the released model's, output
stride 8), the peers their ImageNet layout at that input (10 classes, output stride 32): their
last MobileViT blocks see 2x2 and 1x1 maps, a single token to attend to, so they are cheaper
and not the same network (transformers' MobileViTV2 cannot unfold the 1x1 map at all).
Parameters are the trainable ones (Keras' BatchNorm statistics are weights, torch's buffers).

    pip install -e ".[peers,reference]"   # kimm; transformers and torch
    python benchmarks/peers.py                        # 256 and 32, all peers installed
    python benchmarks/peers.py --sizes 32 --steps 2   # a quick look
"""

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

# (our variant at 256, our CIFAR variant, kimm class, transformers config kind)
MODELS = {
    "XXS": ("xxs", "xxs_cifar", "MobileViTXXS"),
    "v2 0.5": ("v2_050", "v2_050_cifar", "MobileViTV2W050"),
}


def best_rate(step, images, windows=3, steps=5):
    """Images/s of `step()` (which handles `images` images): the best of `windows` windows of
    `steps` calls, after one warm-up call (neighbours on a shared machine only slow a window)."""
    step()
    best = float("inf")
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - start)
    return images * steps / best


def random_batch(batch_size, size, num_classes):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(batch_size, size, size, 3)).astype("float32")
    return x, rng.integers(0, num_classes, size=(batch_size,))


def ours(name, size, num_classes):
    from mobilevit_utils import models

    imagenet, cifar, _ = MODELS[name]
    variant = imagenet if size != 32 else cifar
    return variant, models.build_mobilevit(variant, num_classes, input_shape=(size, size, 3))


def kimm_model(name, size, num_classes):
    import kimm

    cls = getattr(kimm.models, MODELS[name][2])
    model = cls(
        input_shape=(size, size, 3),
        weights=None,
        classes=num_classes,
        classifier_activation=None,
    )
    return f"kimm.models.{MODELS[name][2]}", model


def keras_columns(model, size, num_classes, args):
    """(trainable parameters, training img/s, inference img/s, TFLite fp32 ms) of a Keras
    model."""
    import keras

    from mobilevit_utils import export

    x, y = random_batch(args.batch_size, size, num_classes)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    train = best_rate(lambda: model.train_on_batch(x, y), len(x), steps=args.steps)
    infer = export.keras_inference_fn(model)
    inference = best_rate(lambda: infer(x), len(x), steps=args.steps)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)  # as torch counts them
    return params, train, inference, litert_latency_ms(model, x[:1], args.runs)


def litert_latency_ms(model, image, runs):
    """Batch-1 latency of the model exported by Keras' own `export(format="litert")`."""
    from ai_edge_litert.interpreter import Interpreter

    from mobilevit_utils import export

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        model.export(str(path), format="litert", verbose=False)
        interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(x):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return export.median_latency_ms(run, image, runs)


def transformers_training_rate(name, size, num_classes, args):
    """(model name, params, training img/s) of transformers' model, built by the config that
    mobilevit_utils.convert maps our ImageNet variant to (random weights, PyTorch on CPU)."""
    import torch
    from transformers import MobileViTForImageClassification, MobileViTV2ForImageClassification

    from mobilevit_utils import convert

    config = convert.reference_config(MODELS[name][0], num_classes)
    v2 = config.model_type == "mobilevitv2"
    model = (MobileViTV2ForImageClassification if v2 else MobileViTForImageClassification)(config)
    x, y = random_batch(args.batch_size, size, num_classes)
    pixels = torch.from_numpy(x.transpose(0, 3, 1, 2) / 255.0)
    labels = torch.from_numpy(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step():
        optimizer.zero_grad()
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()

    rate = best_rate(step, len(x), steps=args.steps)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return type(model).__name__, params, rate


def rows_for(size, args):
    """One row per implementation and model at input `size`."""
    num_classes = 10 if size == 32 else 1000
    found = []
    for name in MODELS:
        builders = [("this project", ours)]
        if importlib.util.find_spec("kimm") is not None:
            builders.append(("kimm", kimm_model))
        for who, build in builders:
            label, model = build(name, size, num_classes)
            params, train, infer, tflite = keras_columns(model, size, num_classes, args)
            found.append((who, name, label, size, params, train, infer, tflite))
        if importlib.util.find_spec("transformers") is not None:
            try:
                label, params, train = transformers_training_rate(name, size, num_classes, args)
            except RuntimeError as error:  # MobileViTV2 unfolds a 1x1 map into 2x2 patches at 32
                print(f"transformers {name} at {size}x{size}: {str(error).splitlines()[0]}")
                continue
            found.append(("transformers (torch)", name, label, size, params, train, None, None))
    return found


def table(rows):
    head = "| implementation | model | input | parameters | training step | Keras inference | TFLite fp32, batch 1 |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for who, name, label, size, params, train, infer, tflite in rows:
        infer_text = f"{infer:.0f} img/s" if infer else "-"
        tflite_text = f"{tflite:.1f} ms" if tflite else "-"
        lines.append(
            f"| {who} | {name} (`{label}`) | {size}x{size} | {params:,} | {train:.1f} img/s "
            f"| {infer_text} | {tflite_text} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 32])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--runs", type=int, default=100, help="TFLite calls timed")
    args = parser.parse_args(argv)
    import keras

    missing = [p for p in ("kimm", "transformers") if importlib.util.find_spec(p) is None]
    rows = [row for size in args.sizes for row in rows_for(size, args)]
    print(
        f"batch {args.batch_size}, best of 3 windows of {args.steps} steps; TFLite: median of "
        f"{args.runs} calls, 1 thread; Keras {keras.__version__} ({keras.backend.backend()}), "
        f"{os.cpu_count()} CPU cores"
        + (f"; not installed: {', '.join(missing)}" if missing else "")
    )
    print(table(rows))


if __name__ == "__main__":
    main()
