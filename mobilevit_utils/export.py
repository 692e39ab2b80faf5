"""TFLite (LiteRT) export in four precisions, a LiteRT interpreter wrapper, parity checks.

    fp32     float32 weights and compute: the reference, same numbers as Keras.
    dynamic  int8 weights, float compute (weights de-quantised on the fly): ~4x smaller.
    fp16     float16 weights: ~2x smaller; GPUs delegates compute in float16.
    int8     full-integer: int8 weights, activations, input and output, calibrated on real
             images: smallest and fastest on CPUs, DSPs and NPUs (Edge TPU, phone NPUs).

Each `.tflite` file gets a JSON sidecar (`<name>.json`) with class names, input size, input
name, scaling and the int8 input/output quantisation parameters, so an app — or
`TFLiteModel` — feeds it correctly. Conversion needs the TensorFlow backend (the converter is
part of TensorFlow); the interpreter (`ai_edge_litert`) needs only NumPy.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path

import numpy as np

from mobilevit_utils.environment import quiet_stderr
from mobilevit_utils.errors import UserError
from mobilevit_utils.inference import (  # noqa: F401  (part of this module's API too)
    TFLiteModel,
    keras_logits,
    metadata_path,
    outputs_probabilities,
    read_metadata,
)

PRECISIONS = ("fp32", "dynamic", "fp16", "int8")
INPUT_NAME = "image"
DEFAULT_CALIBRATION_SAMPLES = 200  # representative images for int8; more rarely helps


def calibration_sample(images, num=DEFAULT_CALIBRATION_SAMPLES, seed=0):
    """`num` images drawn at random (reproducibly) for int8 calibration: a random draw covers
    the classes, where the first `num` of a class-sorted folder would not."""
    pick = np.random.default_rng(seed).permutation(len(images))[:num]
    return images[pick]


class ExportError(UserError, RuntimeError):
    """The model cannot be exported as asked (no TensorFlow, no calibration images, a precision
    its layers do not support); the message says what to change."""


class FlexOpsError(ExportError):
    """The model needs TensorFlow (Flex / SELECT_TF_OPS) ops, which plain LiteRT lacks."""


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise ExportError(
            "TFLite conversion needs TensorFlow: pip install tensorflow==2.21.0"
        ) from None
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"TFLite conversion needs KERAS_BACKEND=tensorflow (now {keras.backend.backend()}); "
            "a .keras file saved on any backend can be loaded there."
        )
    return tf


def _saved_model(model, directory, batch_one):
    """Write the inference function as a SavedModel with one named input.

    The SavedModel route (what `model.export(format="litert")` uses) lets the converter freeze
    the weights into constants and fold BatchNorm into the convolutions.
    """
    import keras

    tf = _tf()
    shape = (1 if batch_one else None, *model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda image: {"logits": model(image, training=False)},
        input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
    )
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # "INFO:tensorflow:Assets written to: ..."
    try:
        with quiet_stderr():
            archive.write_out(str(directory), verbose=False)
    finally:
        logger.setLevel(level)


def unsupported_ops(message):
    """TensorFlow op names the converter could not map to LiteRT builtins, from its error."""
    names = set(re.findall(r"'tf\.(\w+)' op is neither", message))
    for listed in re.findall(r"(?:Custom|Flex) ops: ([\w, ]+)", message):
        names.update(n.strip() for n in listed.split(",") if n.strip())
    return sorted(names)


def to_flatbuffer(
    model,
    precision="fp32",
    calibration_images=None,
    num_calibration=DEFAULT_CALIBRATION_SAMPLES,
    batch_one=True,
    saved_model_dir=None,
):
    """Convert a Keras model to TFLite bytes.

    Args:
        precision: one of `PRECISIONS`.
        calibration_images: uint8/float images (N, H, W, 3) for int8's representative dataset.
        num_calibration: how many of them to use.
        batch_one: a fixed batch-1 signature (what phones run); else a dynamic batch.
        saved_model_dir: reuse a SavedModel of `model` already written by `_saved_model`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "int8" and (calibration_images is None or len(calibration_images) == 0):
        raise ExportError(
            "int8 export needs calibration images (--calibration-data FOLDER, Python: "
            "calibration_images=)."
        )
    if precision == "int8" and (refusal := _int8_refusal(model)):
        raise ExportError(refusal)
    if saved_model_dir is None:
        with tempfile.TemporaryDirectory() as directory:
            _saved_model(model, directory, batch_one)
            return to_flatbuffer(
                model, precision, calibration_images, num_calibration, batch_one, directory
            )
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    _configure(converter, precision, calibration_images, num_calibration)
    try:
        with quiet_stderr():  # the converter prints hundreds of MLIR lines from C++
            return converter.convert()
    except Exception as error:
        message = str(error)
        ops = unsupported_ops(message)
        if ops:
            raise FlexOpsError(
                f"Refusing to export: the model needs TensorFlow (Flex) ops that LiteRT builtins "
                f"lack: {', '.join(ops)}; replace them with operations that have TFLite kernels."
            ) from None
        raise


def _int8_refusal(model):
    """Why int8 export refuses `model` (its block kinds' `int8_refusal`), or "" if it does not."""
    from mobilevit_utils import block_kinds

    for kind in block_kinds.block_kinds_in(model):
        if kind.int8_refusal:
            return (
                f"int8 export of {kind.label or kind.name}s is refused: {kind.int8_refusal}; "
                "export fp32, fp16 or dynamic instead."
            )
    return ""


def _configure(converter, precision, calibration_images, num_calibration):
    tf = _tf()
    # Builtin ops only: a model that needs Flex ops is refused rather than silently requiring
    # the 10+ MB TensorFlow runtime on the phone.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision in ("dynamic", "fp16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        samples = np.asarray(calibration_images[:num_calibration], dtype="float32")
        ramp = _input_range_ramp(samples)

        def representative_dataset():
            yield [ramp[None]]
            for image in samples:
                yield [image[None]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _input_range_ramp(samples):
    """One calibration image that runs from the darkest to the brightest value an input can
    take (0-255, or 0-1 for inputs already scaled): int8's input range is fitted to what
    calibration shows, and photos whose brightest pixel is 229 would leave 255 outside it
    (overflowing int8 in an app, and clipped inside the model). A ramp, unlike a white image,
    keeps the activations inside the model ordinary."""
    top = 255.0 if samples.max() > 1.5 else 1.0
    ramp = np.linspace(0.0, top, samples.shape[2], dtype="float32")
    return np.broadcast_to(ramp[None, :, None], samples.shape[1:]).copy()


def export(
    model,
    out_dir,
    precisions=PRECISIONS,
    class_names=None,
    calibration_images=None,
    num_calibration=DEFAULT_CALIBRATION_SAMPLES,
    batch_one=True,
    name=None,
    preprocessing=None,
    extra_metadata=None,
):
    """Write `<name>_<precision>.tflite` + `.json` sidecars to `out_dir`; return their paths.

    `name`: default the model's name (the command line names the files after the run).
    `preprocessing`: the input contract written to the sidecars (default
    `models.RAW_RGB`, this project's models: raw RGB pixels, rescaled inside the model).
    `extra_metadata`: more keys for every sidecar (the command line adds the model card's
    essentials and how images are fitted to the input).
    """
    from mobilevit_utils.models import RAW_RGB

    preprocessing = preprocessing or RAW_RGB
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or model.name
    paths = {}
    with tempfile.TemporaryDirectory() as saved_model_dir:
        _saved_model(model, saved_model_dir, batch_one)  # once, for every precision
        flatbuffers = {
            precision: to_flatbuffer(
                model, precision, calibration_images, num_calibration, batch_one, saved_model_dir
            )
            for precision in precisions
        }
    for precision, flatbuffer in flatbuffers.items():
        path = out_dir / f"{name}_{precision}.tflite"
        path.write_bytes(flatbuffer)
        runner = TFLiteModel(path, metadata=False)
        metadata = {
            "precision": precision,
            "class_names": list(class_names) if class_names is not None else None,
            "input_name": INPUT_NAME,
            "input_shape": list(runner.input_shape),  # (height, width, channels)
            "batch_size": int(runner.input_details["shape"][0]) if batch_one else None,
            "input_dtype": np.dtype(runner.input_details["dtype"]).name,
            "preprocessing": preprocessing.to_dict(),
            "output": (
                "probabilities (the model applies softmax)"
                if outputs_probabilities(model)
                else "logits (apply softmax for probabilities)"
            ),
            "input_quantization": _quantization(runner.input_details),
            "output_quantization": _quantization(runner.output_details),
            "calibration_samples": (
                min(num_calibration, len(calibration_images)) if precision == "int8" else None
            ),
            "ops": sorted(set(runner.op_names())),
            **(extra_metadata or {}),
        }
        write_metadata(path, metadata)
        paths[precision] = path
    return paths


def _quantization(details):
    scale, zero_point = details["quantization"]
    if not scale:
        return None
    return {
        "scale": float(scale),
        "zero_point": int(zero_point),
        "formula": "q = clip(round(x / scale) + zero_point, -128, 127)",
    }


def write_metadata(model_path, metadata):
    metadata_path(model_path).write_text(json.dumps(metadata, indent=2) + "\n")


def op_dtypes(tflite_path):
    """Each operator of a `.tflite` file, as stored (before any delegate takes it over), with
    the dtypes of its inputs and outputs: [{"op": "CONV_2D", "inputs": ("int8", "int8",
    "int32"), "outputs": ("int8",)}, ...]. Shows which operators of an int8 file still
    compute in float32."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(tflite_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return [
        {
            "op": op["op_name"],
            "inputs": tuple(dtypes[i] for i in op["inputs"] if i >= 0),
            "outputs": tuple(dtypes[i] for i in op["outputs"]),
        }
        for op in interpreter._get_ops_details()
    ]


def parity(model, tflite_path, images, tolerance=1e-4):
    """Compare a TFLite file with its Keras model on `images`.

    Returns max |logit difference|, top-1 agreement and whether the check passed: within
    `tolerance` for fp32, top-1 agreement >= 95 % for the quantised precisions (their
    differences are expected; large disagreement is not).
    """
    runner = TFLiteModel(tflite_path)
    want = keras_logits(model, images)
    got = runner.predict(images)
    max_diff = float(np.abs(got - want).max())
    agreement = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    precision = runner.metadata.get("precision", "fp32")
    ok = max_diff <= tolerance if precision == "fp32" else agreement >= 0.95
    return {"precision": precision, "max_abs_diff": max_diff, "top1_agreement": agreement, "ok": ok}


@dataclasses.dataclass
class ExportCheck:
    """One exported precision: its file, size, parity with Keras (`parity`'s dict) and, when
    evaluation images were given, its accuracy and macro F1 on them."""

    precision: str
    path: Path
    size_kb: float
    parity: dict
    accuracy: float | None = None
    macro_f1: float | None = None

    @property
    def ok(self):
        return self.parity["ok"]


def export_and_check(
    model,
    out_dir,
    precisions=PRECISIONS,
    class_names=None,
    calibration_images=None,
    eval_data=None,
    num_calibration=DEFAULT_CALIBRATION_SAMPLES,
    batch_one=True,
    check_images=None,
    **export_options,
):
    """Export `model` (`export`), check each file against Keras (`parity` on `check_images`:
    default the first 64 calibration images, else 16 random ones) and, with `eval_data` =
    (images, labels, class_names), evaluate each file on it; returns {precision: ExportCheck}.
    `export_options`: `export`'s `name`, `preprocessing` and `extra_metadata`. The command line's `export` and
    tools/release_checkpoint.py both run this."""
    from mobilevit_utils import evaluation

    paths = export(
        model,
        out_dir,
        precisions,
        class_names,
        calibration_images,
        num_calibration,
        batch_one,
        **export_options,
    )
    if check_images is None:
        check_images = (
            calibration_images[:64]
            if calibration_images is not None
            else np.random.default_rng(0)
            .uniform(0, 255, size=(16, *model.input_shape[1:]))
            .astype("float32")
        )
    checks = {}
    for precision, path in paths.items():
        check = ExportCheck(
            precision, path, path.stat().st_size / 1024, parity(model, path, check_images)
        )
        if eval_data is not None:
            images, labels, names = eval_data
            report = evaluation.evaluate(TFLiteModel(path), images, labels, names)
            check.accuracy, check.macro_f1 = report.accuracy, report.macro_f1
        checks[precision] = check
    return checks


# --------------------------------------------------------------------------------------------
# Latency


def keras_inference_fn(model):
    """A compiled batch inference function of a Keras model (a `tf.function` on TensorFlow;
    Keras' own compiled predict step on the other backends)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return lambda x: compiled(np.asarray(x, "float32")).numpy()
    return lambda x: model.predict_on_batch(np.asarray(x, "float32"))


def median_latency_ms(fn, image, runs=50, warmup=5):
    """Median wall time of `fn(image)` in milliseconds over `runs` calls after a warm-up."""
    import time

    for _ in range(warmup):
        fn(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
