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

import json
import re
import tempfile
from pathlib import Path

import numpy as np

from mobilevit_utils.environment import quiet_stderr

PRECISIONS = ("fp32", "dynamic", "fp16", "int8")
INPUT_NAME = "image"
DEFAULT_CALIBRATION_SAMPLES = 200  # representative images for int8; more rarely helps


def calibration_sample(images, num=DEFAULT_CALIBRATION_SAMPLES, seed=0):
    """`num` images drawn at random (reproducibly) for int8 calibration: a random draw covers
    the classes, where the first `num` of a class-sorted folder would not."""
    pick = np.random.default_rng(seed).permutation(len(images))[:num]
    return images[pick]


class FlexOpsError(RuntimeError):
    """The model needs TensorFlow (Flex / SELECT_TF_OPS) ops, which plain LiteRT lacks."""


class ExportError(RuntimeError):
    pass


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise ExportError("TFLite conversion needs TensorFlow: pip install tensorflow==2.21.0") from None
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
        "serve", lambda image: {"logits": model(image, training=False)},
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


def convert(model, precision="fp32", calibration_images=None,
            num_calibration=DEFAULT_CALIBRATION_SAMPLES, batch_one=True, saved_model_dir=None):
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
        raise ExportError("int8 export needs calibration images (--calibration-data or a dataset).")
    if saved_model_dir is None:
        with tempfile.TemporaryDirectory() as directory:
            _saved_model(model, directory, batch_one)
            return convert(model, precision, calibration_images, num_calibration, batch_one, directory)
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

        def representative_dataset():
            for image in samples:
                yield [image[None]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def export(model, out_dir, precisions=PRECISIONS, class_names=None, calibration_images=None,
           num_calibration=DEFAULT_CALIBRATION_SAMPLES, batch_one=True, name=None):
    """Write `<name>_<precision>.tflite` + `.json` sidecars to `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or model.name
    paths = {}
    with tempfile.TemporaryDirectory() as saved_model_dir:
        _saved_model(model, saved_model_dir, batch_one)  # once, for every precision
        flatbuffers = {precision: convert(model, precision, calibration_images, num_calibration,
                                          batch_one, saved_model_dir) for precision in precisions}
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
            "preprocessing": "RGB pixels 0-255 as floats (the model rescales by 1/255 itself)",
            "output": "logits (apply softmax for probabilities)",
            "input_quantization": _quantization(runner.input_details),
            "output_quantization": _quantization(runner.output_details),
            "calibration_samples": (min(num_calibration, len(calibration_images))
                                    if precision == "int8" else None),
            "ops": sorted(set(runner.op_names())),
        }
        write_metadata(path, metadata)
        paths[precision] = path
    return paths


def _quantization(details):
    scale, zero_point = details["quantization"]
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point),
            "formula": "q = round(x / scale) + zero_point"}


def metadata_path(model_path):
    return Path(model_path).with_suffix(".json")


def write_metadata(model_path, metadata):
    metadata_path(model_path).write_text(json.dumps(metadata, indent=2) + "\n")


def read_metadata(model_path):
    path = metadata_path(model_path)
    return json.loads(path.read_text()) if path.exists() else {}


class TFLiteModel:
    """Run a `.tflite` model with the LiteRT interpreter (`ai_edge_litert`).

    `predict(images)` takes (N, H, W, 3) uint8 or float pixels in 0-255, quantises them for int8
    models, runs image by image for batch-1 models, and returns float logits (N, classes).
    """

    def __init__(self, path, num_threads=None, metadata=True):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ExportError("Running .tflite models needs LiteRT: pip install ai-edge-litert") from None
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"No TFLite model at {self.path}.")
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter.allocate_tensors()
        self.input_details = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()[0]
        self.metadata = read_metadata(self.path) if metadata else {}

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.input_details["shape"][1:])

    @property
    def class_names(self):
        return self.metadata.get("class_names")

    def op_names(self):
        """The model's operators as stored in the file (before any delegate takes them over)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        plain = Interpreter(model_path=str(self.path),
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        return [op["op_name"] for op in plain._get_ops_details()]

    def _check(self, images):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.path.name} expects images of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {images.shape}; resize them to the model input first."
            )
        if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
            raise ValueError(f"{self.path.name} expects uint8 or float pixels, got dtype {images.dtype}.")
        return images

    def _quantise(self, images):
        dtype = self.input_details["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self.input_details["quantization"]
            info = np.iinfo(dtype)
            q = np.round(images.astype("float32") / scale) + zero_point
            return np.clip(q, info.min, info.max).astype(dtype)
        return images.astype(dtype)

    def _dequantise(self, outputs):
        if np.issubdtype(self.output_details["dtype"], np.integer):
            scale, zero_point = self.output_details["quantization"]
            return (outputs.astype("float32") - zero_point) * scale
        return outputs.astype("float32")

    def predict(self, images):
        images = self._quantise(self._check(images))
        batch = int(self.input_details["shape"][0])
        chunks = [images[i:i + 1] for i in range(len(images))] if batch == 1 else [images]
        outputs = []
        for chunk in chunks:
            if batch != 1 and chunk.shape[0] != self.input_details["shape"][0]:
                self.interpreter.resize_tensor_input(self.input_details["index"], chunk.shape)
                self.interpreter.allocate_tensors()
                self.input_details = self.interpreter.get_input_details()[0]
            self.interpreter.set_tensor(self.input_details["index"], chunk)
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self.output_details["index"]).copy())
        return self._dequantise(np.concatenate(outputs))


def keras_logits(model, images, batch_size=256):
    """float32 logits of a Keras model, batch by batch."""
    import keras

    outputs = [keras.ops.convert_to_numpy(model(np.asarray(images[i:i + batch_size], "float32"), training=False))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype("float32")


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


# --------------------------------------------------------------------------------------------
# CLI


def _add_export(sub):
    p = sub.add_parser("export", help="convert a .keras model to TFLite",
                       description="Convert a .keras model to TFLite in one or all precisions, "
                                   "check each against Keras, and print a size/parity/accuracy table.")
    p.add_argument("--model", required=True, help="the .keras model (its run's metadata.json gives class names)")
    p.add_argument("--quantization", default="all", choices=[*PRECISIONS, "all"],
                   help="precision to export (default: all four)")
    p.add_argument("--out", required=True, help="output folder for .tflite files and their .json metadata")
    p.add_argument("--calibration-data", help="image folder (train/<class>/* or <class>/*) for int8 "
                                             "calibration; default the project's dataset")
    p.add_argument("--calibration-samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES)
    p.add_argument("--eval-data", help="image folder to report accuracy on (its test/ split, else the "
                                      "validation split training held out); "
                                      "default: none (parity only)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch size instead of batch 1")
    p.set_defaults(handler=_export_command)


def _export_command(args):
    from mobilevit_utils import data as data_lib
    from mobilevit_utils import evaluation

    model, metadata = evaluation.load_classifier(args.model)
    if Path(args.model).suffix != ".keras":
        raise ValueError(f"--model must be a .keras file, got {Path(args.model).name}.")
    precisions = PRECISIONS if args.quantization == "all" else (args.quantization,)
    size = tuple(model.input_shape[1:3])
    calibration = None
    if "int8" in precisions:
        source = data_lib.load_dataset(args.calibration_data, image_size=size,
                                       max_per_class=max(1, args.calibration_samples // 2))
        calibration = calibration_sample(source.x_train, args.calibration_samples)
    paths = export(model, args.out, precisions, metadata.get("class_names"), calibration,
                   args.calibration_samples, batch_one=not args.dynamic_batch)
    check_images = calibration[:64] if calibration is not None else np.random.default_rng(0).uniform(
        0, 255, size=(16, *model.input_shape[1:])).astype("float32")
    evaluation_set = None
    if args.eval_data:
        evaluation_set, split = evaluation.held_out_data(metadata, args.eval_data)
        print(f"accuracy on the {split} split of {args.eval_data}")
    print(f"{'precision':<10}{'size KB':>10}  {'parity':<34}{'accuracy':>9}")
    for precision, path in paths.items():
        result = parity(model, path, check_images)
        detail = (f"max|diff| {result['max_abs_diff']:.1e}" if precision == "fp32"
                  else f"top-1 agreement {result['top1_agreement']:.1%}")
        status = "ok" if result["ok"] else "FAILED"
        accuracy = ""
        if evaluation_set is not None:
            x, y, names, _ = evaluation_set
            accuracy = f"{evaluation.evaluate(TFLiteModel(path), x, y, names).accuracy:.4f}"
        print(f"{precision:<10}{path.stat().st_size / 1024:>10.0f}  {status + ', ' + detail:<34}{accuracy:>9}")
    print(f"written to {args.out}")


CLI_COMMANDS = [_add_export]


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
