"""Running a saved classifier: a `.keras` model or a `.tflite` file, the same way.

`load_classifier(path)` returns either a Keras model or a `TFLiteModel` (the LiteRT
interpreter, `ai_edge_litert`, which needs only NumPy) with its metadata, and
`predict_logits`/`predict_proba` run both in batches. Evaluation, export checks, the CLI and the
notebooks all go through here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mobilevit_utils.environment import quiet_stderr


def metadata_path(model_path):
    return Path(model_path).with_suffix(".json")


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
            raise ImportError(
                "Running .tflite models needs LiteRT: pip install ai-edge-litert"
            ) from None
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

        plain = Interpreter(
            model_path=str(self.path),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
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
        if not (
            np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
        ):
            raise ValueError(
                f"{self.path.name} expects uint8 or float pixels, got dtype {images.dtype}."
            )
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
        chunks = [images[i : i + 1] for i in range(len(images))] if batch == 1 else [images]
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

    outputs = [
        keras.ops.convert_to_numpy(
            model(np.asarray(images[i : i + batch_size], "float32"), training=False)
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).astype("float32")


def load_keras_file(path, compile=True):
    """`keras.saving.load_model` (safe mode) with one clear line for what users meet: a folder
    named *.keras, a file that is not a .keras archive (a zip), or a damaged one."""
    import zipfile

    import keras

    import mobilevit_utils  # noqa: F401  (registers the layers for safe_mode loading)

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a .keras file; pass the model file itself.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a valid .keras archive (a .keras file is a zip); it may be "
            "truncated or damaged: copy or save it again."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as error:  # zip members missing or corrupt, unknown layers
        raise ValueError(
            f"{path} could not be loaded as a Keras model ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0][:120] if str(error) else 'no details'}); it may be "
            "damaged, or saved by another library."
        ) from None


def load_classifier(path):
    """A `.keras` model or a `TFLiteModel`, with its metadata (class names, input size).

    Metadata comes from `<model>.json` beside the file, or the run's `metadata.json`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No model at {path}; train one (notebook 03) or pass another path."
        )
    if path.suffix == ".tflite":
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a .tflite file.")
        try:
            model = TFLiteModel(path)
        except (ValueError, RuntimeError) as error:
            raise ValueError(
                f"{path} is not a valid TFLite model ({str(error).splitlines()[0][:100]}); it may "
                "be truncated or damaged: export it again."
            ) from None
        return model, dict(model.metadata)
    if path.suffix != ".keras":
        raise ValueError(f"Expected a .keras or .tflite model, got {path.name}.")
    model = load_keras_file(path)
    metadata = {}
    for candidate in (path.with_suffix(".json"), path.parent / "metadata.json"):
        if candidate.exists():
            metadata = json.loads(candidate.read_text())
            break
    metadata.setdefault("input_shape", list(model.input_shape[1:]))
    return model, metadata


def shifted(images, dy, dx):
    """Images moved by whole pixels (`dy` down, `dx` right), the uncovered edge filled by
    reflection, as the training policy's `RandomTranslation(fill_mode="reflect")` does."""
    images = np.asarray(images)
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    top, left = pad - dy, pad - dx
    return padded[:, top : top + height, left : left + width]


# One-pixel moves in the four directions, and none.
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def tta_views(flip=False, shift=False):
    """Forward passes per image that `predict_logits` makes with these options."""
    return (2 if flip else 1) * (len(SHIFTS) if shift else 1)


def predict_logits(model, images, batch_size=256, flip=False, shift=False):
    """Logits for uint8/float images, computed batch by batch (only the (N, classes) result is
    kept in memory). `model` is a Keras model or a `TFLiteModel`.

    Test-time augmentation averages the logits of several views of each image; training
    showed the model such views, so all are in distribution. `flip=True`: the image and its
    mirror image (2 forward passes). `shift=True`: the image and its one-pixel moves in four
    directions (5 passes; 10 with `flip`).
    """
    if shift:
        images = np.asarray(images)
        views = [shifted(images, dy, dx) for dy, dx in SHIFTS]
        return sum(predict_logits(model, v, batch_size, flip) for v in views) / len(views)
    if flip:
        images = np.asarray(images)
        return (
            predict_logits(model, images, batch_size)
            + predict_logits(model, images[:, :, ::-1], batch_size)
        ) / 2
    if not hasattr(model, "interpreter"):
        return keras_logits(model, images, batch_size)
    outputs = [
        model.predict(np.asarray(images[start : start + batch_size]))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).astype("float32")


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_proba(model, images, batch_size=256, flip=False, shift=False):
    return softmax(predict_logits(model, images, batch_size, flip=flip, shift=shift))


def logits_on_backend(model_path, images, backend):
    """Logits of a saved `.keras` model computed under another Keras backend, in a fresh Python
    process (a process's backend is fixed once Keras is imported). Shows, and tests, that one
    file runs the same on TensorFlow, JAX and PyTorch."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = Path(folder) / "images.npy", Path(folder) / "logits.npy"
        np.save(inputs, np.asarray(images, dtype="float32"))
        subprocess.run(
            [sys.executable, "-m", "mobilevit_utils.inference", str(model_path), inputs, outputs],
            check=True,
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        return np.load(outputs)


if __name__ == "__main__":  # python -m mobilevit_utils.inference MODEL.keras IMAGES.npy OUT.npy
    import sys

    import keras

    model_file, images_file, out_file = sys.argv[1:4]
    model = keras.saving.load_model(model_file, safe_mode=True)
    np.save(out_file, keras_logits(model, np.load(images_file)))
