"""Run under one Keras backend (KERAS_BACKEND set by the caller): train every recipe for one
short epoch, reload its checkpoint with safe_mode=True, check it computes in float32, evaluate
it and (on TensorFlow) export it to TFLite.

Usage: python tests/integration/preset_runs.py OUT_DIR [RECIPE ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/helpers.py

import keras  # noqa: E402
import numpy as np  # noqa: E402
from helpers import tiny_dataset  # noqa: E402

from mobilevit_utils import evaluation, export, training  # noqa: E402

out_dir = Path(sys.argv[1])
recipes = sys.argv[2:] or list(training.RECIPES)
backend = keras.backend.backend()
dataset = tiny_dataset(n_per_class=8)  # 18 training images: two batches of 8
exported = {}  # (model, mixed_precision) -> the recipe exported with them

for name in recipes:
    lines = []
    # Tiny overrides only: the recipe's augmentation, precision and EMA stay. jit_compile=True
    # means torch.compile on PyTorch, which ran over 15 minutes on a 2-core CPU without
    # finishing its first step, so PyTorch runs eagerly here.
    jit = {"jit_compile": "auto"} if backend == "torch" else {}
    result = training.train(
        name,
        run_dir=out_dir / f"{backend}-{name}",
        dataset=dataset,
        epochs=1,
        head_epochs=1,  # fine-tuning recipes only: one epoch of the new head first
        batch_size=8,
        warmup_epochs=0,
        print_fn=lines.append,
        **jit,
    )
    history = result["history"]
    assert len(history) == 1 and np.isfinite(history[0]["loss"]), (name, history)
    assert keras.config.dtype_policy().name == "float32", "train() leaked its dtype policy"

    model, metadata = training.load_run(result["run_dir"], compile=False)
    policies = {layer.dtype_policy.name for layer in model._flatten_layers()}
    assert policies == {"float32"}, f"{name}: reloaded with dtype policies {policies}"
    assert all(w.dtype == "float32" for w in model.weights), name
    report = evaluation.evaluate(model, dataset.x_val, dataset.y_val, dataset.class_names)
    assert report.probabilities.dtype == np.float32 and np.isfinite(report.probabilities).all()
    print(
        f"{backend} {name}: trained one epoch (loss {history[0]['loss']:.3f}), reloaded in "
        f"float32, val accuracy {report.accuracy:.2f}",
        flush=True,
    )

    # One export per model and precision: recipes that share both give the same TFLite graph.
    kind = (training.get_recipe(name).model, training.get_recipe(name).mixed_precision)
    if backend == "tensorflow" and kind in exported:
        print(f"{backend} {name}: TFLite graph as {exported[kind]}'s, not exported again")
    elif backend == "tensorflow":
        exported[kind] = name
        path = export.export(
            model, out_dir / f"{name}-tflite", precisions=("fp32",), class_names=dataset.class_names
        )["fp32"]
        runner = export.TFLiteModel(path)
        assert runner.input_details["dtype"] == np.float32
        tensor_types = {d["dtype"] for d in runner.interpreter.get_tensor_details()}
        assert np.float16 not in tensor_types, f"{name}: float16 tensors in {path.name}"
        gap = np.abs(runner.predict(dataset.x_val) - export.keras_logits(model, dataset.x_val))
        assert gap.max() < 1e-3, f"{name}: TFLite differs from Keras by {gap.max()}"
        print(f"{backend} {name}: exported to TFLite fp32 without float16 tensors", flush=True)

# The bundle's levers, which no preset uses yet: the weight average (read through the trainer's
# state on JAX) and the alternating flip.
result = training.train(
    "quick",
    run_dir=out_dir / f"{backend}-levers",
    dataset=dataset,
    epochs=2,
    batch_size=8,
    warmup_epochs=0,
    weight_averaging=True,
    averaging_interval=1,
    augmentation="light_alternating",
    print_fn=lambda *_: None,
    **({"jit_compile": "auto"} if backend == "torch" else {}),
)
assert len(result["history"]) == 2 and all(np.isfinite(r["loss"]) for r in result["history"])
print(f"{backend} levers: weight averaging and alternating flip trained two epochs", flush=True)
