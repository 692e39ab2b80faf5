"""Running a saved classifier: a `.keras` model or a `.tflite` file, the same way.

`load_classifier(path)` returns either a Keras model or a `TFLiteModel` (the LiteRT
interpreter, `ai_edge_litert`, which needs only NumPy) with its metadata, and
`predict_logits`/`predict_proba` run both in batches. Evaluation, export checks, the CLI and the
notebooks all go through here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np

from mobilevit_utils.environment import quiet_stderr
from mobilevit_utils.errors import (
    InvalidInputError,
    MissingDependencyError,
    MissingInputError,
    ModelFileError,
    SidecarError,
)
from mobilevit_utils.run_files import RunMetadata, read_json_object


def metadata_path(model_path):
    return Path(model_path).with_suffix(".json")


def read_metadata(model_path):
    path = metadata_path(model_path)
    return read_json_object(path) if path.exists() else {}


def check_metadata(metadata, source, model_path, input_shape, num_outputs, required=()):
    """Refuse metadata (read from `source`) that does not describe its model: a key of
    `required` missing, class names that are not a list of strings or whose number is not the
    model's number of outputs, an input shape other than the model's. Raises a one-line
    `SidecarError` naming `source` and what differs."""
    name = Path(model_path).name
    fix = "fix it, or export (or train) the model again"
    missing = [key for key in required if key not in metadata]
    if missing:
        raise SidecarError(f"{source} lacks {', '.join(missing)}, needed to run {name}; {fix}.")
    read = RunMetadata.from_dict(metadata)  # values as they are in the file
    names = read.class_names
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SidecarError(f"{source}: class_names must be a list of names; {fix}.")
        if num_outputs is not None and len(names) != num_outputs:
            raise SidecarError(
                f"{source} names {len(names)} classes but {name} outputs {num_outputs} scores; "
                f"{fix}."
            )
    shape = read.input_shape
    if "input_shape" in metadata:
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(d, int) and d > 0 for d in shape)
        ):
            raise SidecarError(
                f"{source}: input_shape must be [height, width, channels], got {shape!r}; {fix}."
            )
        known = [(a, b) for a, b in zip(shape, input_shape or ()) if b is not None]
        if any(a != b for a, b in known):
            raise SidecarError(
                f"{source} gives input_shape {shape} but {name} takes {list(input_shape)}; {fix}."
            )


class TFLiteModel:
    """Run a `.tflite` model with the LiteRT interpreter (`ai_edge_litert`).

    `predict(images)` takes (N, H, W, 3) uint8 or float pixels in 0-255, quantises them for int8
    models, runs image by image for batch-1 models, and returns float logits (N, classes).
    """

    def __init__(self, path, num_threads=None, metadata=True):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MissingDependencyError(
                "Running .tflite models needs LiteRT: pip install ai-edge-litert"
            ) from None
        self.path = Path(path)
        if not self.path.exists():
            raise MissingInputError(f"No TFLite model at {self.path}.")
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

    @property
    def num_outputs(self):
        return int(self.output_details["shape"][-1])

    @functools.cached_property
    def outputs_probabilities(self):
        """True when the file's last operator (before an int8 output's QUANTIZE) is SOFTMAX:
        its outputs are probabilities already."""
        ops = [op for op in self.op_names() if op not in ("QUANTIZE", "DEQUANTIZE")]
        return bool(ops) and ops[-1] == "SOFTMAX"

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
        raise ModelFileError(f"{path} is a folder, not a .keras file; pass the model file itself.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a valid .keras archive (a .keras file is a zip); it may be "
            "truncated or damaged: copy or save it again."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as error:  # zip members missing or corrupt, unknown layers
        raise ModelFileError(
            f"{path} could not be loaded as a Keras model ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0][:120] if str(error) else 'no details'}); it may be "
            "damaged, or saved by another library."
        ) from None


def load_classifier(path):
    """A `.keras` model or a `TFLiteModel`, with its metadata (class names, input size).

    Metadata comes from `<model>.json` beside the file, or the run's `metadata.json`, and is
    checked against the model (`check_metadata`): a sidecar of a .tflite file must give
    `class_names` and `input_shape`.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(
            f"No model at {path}; train one (`mobilevit train --data-dir IMAGES --out RUN` "
            "writes RUN/model.keras) or pass another path."
        )
    if path.suffix == ".tflite":
        return _load_tflite(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"Expected a .keras or .tflite model, got {path.name}.")
    model = load_keras_file(path)
    metadata, source = _keras_metadata(path, model)
    if source is not None:
        outputs = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
        check_metadata(metadata, source, path, model.input_shape[1:], outputs)
    metadata.setdefault("input_shape", list(model.input_shape[1:]))
    return model, metadata


def _keras_metadata(path, model):
    """(metadata, the file it came from) of a .keras model: `<model>.json` beside it, else its
    run's metadata.json (read by `RunMetadata`; the model's input shape where it gives none)."""
    sidecar = metadata_path(path)
    if sidecar.exists():
        return read_json_object(sidecar), sidecar
    if RunMetadata.exists(path.parent):
        run = RunMetadata.read(path.parent)
        if run.input_shape is None:
            run = dataclasses.replace(run, input_shape=list(model.input_shape[1:]))
        return run.to_dict(), RunMetadata.path(path.parent)
    return {}, None


def _load_tflite(path):
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a .tflite file.")
    try:
        model = TFLiteModel(path, metadata=False)
    except (ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{path} is not a valid TFLite model ({str(error).splitlines()[0][:100]}); it may "
            "be truncated or damaged: export it again."
        ) from None
    sidecar = metadata_path(path)
    if sidecar.exists():
        model.metadata = read_json_object(sidecar)
        check_metadata(
            model.metadata,
            sidecar,
            path,
            model.input_shape,
            model.num_outputs,
            required=("class_names", "input_shape"),
        )
    return model, dict(model.metadata)


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


def outputs_probabilities(model):
    """True when a model's outputs are probabilities already: a Keras model whose last layer
    applies softmax (`Softmax`, `Activation("softmax")`, `Dense(..., activation="softmax")`),
    or a `TFLiteModel` ending in a SOFTMAX operator. This package's models output logits."""
    if hasattr(model, "interpreter"):
        return model.outputs_probabilities
    layer = model
    while getattr(layer, "layers", None):  # a model's last layer, inside nested models too
        layer = layer.layers[-1]
    if type(layer).__name__ == "Softmax":
        return True
    return getattr(getattr(layer, "activation", None), "__name__", None) == "softmax"


def predict_proba(model, images, batch_size=256, flip=False, shift=False):
    """Class probabilities: the softmax of the logits, or the outputs themselves for a model that
    applies softmax already (`outputs_probabilities`), never softmax twice."""
    outputs = predict_logits(model, images, batch_size, flip=flip, shift=shift)
    return outputs if outputs_probabilities(model) else softmax(outputs)


# --------------------------------------------------------------------------------------------
# Image files


def find_images(arguments):
    """Image files named by `arguments` (files, or folders searched recursively, hidden names
    left out), in order, and one line for each argument that names none."""
    from mobilevit_utils import data as data_lib

    paths, problems = [], []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = sorted(
                f
                for f in path.rglob("*")
                if not f.is_dir()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
            )
            found = [f for f in files if f.suffix.lower() in data_lib.IMAGE_EXTENSIONS]
            data_lib.report_unread(files)  # HEIC, raw...: counted in one line, not dropped silently
            if not found:
                problems.append(f"{path}: no image files (extensions {data_lib.IMAGE_EXTENSIONS})")
            paths.extend(found)
        elif path.exists() or path.is_symlink():
            paths.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return paths, problems


def _decode_one(path, image_size, **resize):
    """One image file as uint8 (H, W, 3) resized to `image_size`, through the decoder training
    uses (`data.read_image`: EXIF orientation, 16-bit, transparency): a bad file raises alone."""
    from mobilevit_utils import data as data_lib

    return data_lib.read_image(path, image_size, **resize)


def predict_files(
    classifier,
    paths,
    class_names,
    top_k=3,
    image_size=None,
    batch_size=64,
    on_error="raise",
    crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False,
):
    """The `top_k` classes of each image file, most probable first, as a pandas DataFrame with
    columns `path`, `class_1`, `probability_1`, `class_2`, ... (at most one per class).

    `classifier`: a Keras model or `TFLiteModel` (`load_classifier`); images are resized to
    `image_size` (default: the model's input), stretched or, as the model's training did
    (`RunMetadata.resize_options`), centre-cropped or padded to its shape. A file that cannot be decoded raises
    `data.BadImageError`, or with `on_error="skip"` is left out and listed in
    `frame.attrs["skipped"]` ({path: what is wrong with it}).
    """
    import pandas as pd

    from mobilevit_utils import data as data_lib

    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    if top_k < 1 or batch_size < 1:
        raise InvalidInputError(
            f"top_k and batch_size must be at least 1, got {top_k}, {batch_size}."
        )
    size = tuple(image_size or classifier.input_shape[-3:])[:2]
    k = min(top_k, len(class_names))
    rows, skipped = [], {}
    for start in range(0, len(paths), batch_size):
        decoded = []
        for path in paths[start : start + batch_size]:  # one by one: a bad file fails alone
            try:
                image = _decode_one(
                    path,
                    size,
                    crop_to_aspect_ratio=crop_to_aspect_ratio,
                    pad_to_aspect_ratio=pad_to_aspect_ratio,
                )
                decoded.append((path, image))
            except data_lib.DataError as error:
                if on_error == "raise":
                    raise
                reason = getattr(error, "reason", None)
                skipped[str(path)] = f"it {reason}" if reason else str(error)
        if not decoded:
            continue
        probabilities = predict_proba(classifier, np.stack([image for _, image in decoded]))
        if probabilities.shape[-1] != len(class_names):
            raise InvalidInputError(
                f"{len(class_names)} class names for a model with {probabilities.shape[-1]} "
                "outputs; pass the model's own class names."
            )
        for (path, _), row in zip(decoded, probabilities):
            top = np.argsort(-row, kind="stable")[:k]
            rows.append([str(path), *(v for i in top for v in (class_names[i], float(row[i])))])
    columns = ["path"] + [
        f"{kind}_{rank}" for rank in range(1, k + 1) for kind in ("class", "probability")
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["skipped"] = skipped
    return frame


PREDICTION_FORMATS = (".csv", ".jsonl")


def write_predictions(frame, path):
    """Write `predict_files`' table to a .csv file (its columns, probabilities to 6 decimals) or a
    .jsonl file (one {"path": ..., "top": [{"class": ..., "probability": ...}, ...]} a line)."""
    path = Path(path)
    if path.suffix not in PREDICTION_FORMATS:
        raise InvalidInputError(f"Predictions are written as .csv or .jsonl, got {path.name}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False, float_format="%.6f")
        return path
    ranks = range(1, (len(frame.columns) - 1) // 2 + 1)
    with open(path, "w") as f:
        for row in frame.to_dict("records"):
            top = [
                {"class": row[f"class_{r}"], "probability": row[f"probability_{r}"]} for r in ranks
            ]
            f.write(json.dumps({"path": row["path"], "top": top}) + "\n")
    return path


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
