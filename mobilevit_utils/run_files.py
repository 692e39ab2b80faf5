"""The files of a run folder: `RunMetadata`, the schema of metadata.json and its only reader and
writer, and `write_atomic`, through which every run file is written.

A file is written under a temporary name in its own folder, then moved over the old one with
`os.replace`: a run killed mid-write leaves the previous file, never half of a new one.

This module imports nothing else from the package but `errors`, so that every part that reads a
run's metadata (training, evaluation, inference, presets, the CLI, tools/ and benchmarks/) can.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from pathlib import Path

from mobilevit_utils.errors import SidecarError

METADATA_FILE = "metadata.json"


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside `path` (same folder and suffix) to write to; moved over `path`
    when the block ends without an error, removed when it raises."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path, text):
    """Write `text` to `path` atomically (flushed to disk before it replaces the old file)."""
    with atomic_path(path) as temporary:
        with open(temporary, "x", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())


def write_json(path, payload):
    """`payload` as indented JSON (values JSON lacks, such as paths, as strings), atomically."""
    write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


# Keys a fine-tuned run adds (`TrainConfig.init_from`); written only for such runs.
FINE_TUNING_KEYS = ("init_from", "head_epochs", "source_preprocessing")
# Keys written only when set (not their default), so that runs recorded before they existed
# read and write back unchanged.
OPTIONAL_KEYS = ("data_dir", "crop_to_aspect_ratio", "pad_to_aspect_ratio", "command")
# How an image of another shape is fitted to the model's input, in words.
RESIZE_MODES = {
    "stretch": "stretched to that shape",
    "crop": "cropped to that shape around its centre (the edges are lost)",
    "pad": "shrunk whole and padded to that shape with black bars",
}
_SEQUENCES = ("class_names", "input_shape")  # lists in the file (and in `to_dict`)


def read_json_object(path):
    """The JSON object (a dict) in a metadata file; a `SidecarError` naming the file when it is
    not valid JSON or holds something else."""
    path = Path(path)
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SidecarError(
            f"{path} is not valid JSON ({error.msg}, line {error.lineno}); restore it from the "
            "run or export that wrote it, or delete it."
        ) from None
    except UnicodeDecodeError:
        raise SidecarError(f"{path} is not a text (JSON) file; restore it or delete it.") from None
    if not isinstance(metadata, dict):
        raise SidecarError(
            f"{path} holds a JSON {type(metadata).__name__}, not an object of metadata keys "
            "(class_names, input_shape, ...); restore it or delete it."
        )
    return metadata


@dataclasses.dataclass(frozen=True)
class RunMetadata:
    """A run's metadata.json: what its model takes and was trained on, and how the run went.

    `from_dict` also reads the other metadata a model may come with (a TFLite sidecar, Apple's
    checkpoints' few keys): a key it lacks takes the default below, stated only here; a key
    this schema does not know is kept in `extra` and written back.
    """

    model: str | None = None  # the Keras model's name
    variant: str | None = None  # its `models.VARIANTS` name
    class_names: list[str] | None = None
    input_shape: list[int] | None = None  # [height, width, channels]
    preprocessing: dict | None = None  # the input contract, `models.Preprocessing.to_dict()`
    preset: str | None = None  # the recipe's name
    # How the training images were split: evaluation and export carve the same validation
    # split again. A model without them is taken to use TrainConfig's defaults.
    seed: int = 42
    validation_split: float = 0.1
    max_per_class: int | None = None
    epochs_completed: int | None = None
    best_epoch: int | None = None  # 1-based; the last epoch for a final fit
    best_val_accuracy: float | None = None  # None for a final fit (no validation split)
    wall_time_s_last_session: float | None = None  # fit's time in the last session only
    train_images: int | None = None
    val_images: int | None = None
    data_source: str | None = None
    environment: dict = dataclasses.field(default_factory=dict)  # environment.describe()
    # Fine-tuned runs only: the source (preset or .keras file), its head-only epochs, and its
    # input contract (this model takes raw RGB pixels whatever the source took).
    init_from: str | None = None
    head_epochs: int | None = None
    source_preprocessing: dict | None = None
    # The training folder, absolute (None for CIFAR-10's download or a dataset given in
    # Python): export calibrates int8 on it.
    data_dir: str | None = None
    # How images were fitted to the input (Keras' conventions; both False: stretched), so that
    # evaluation, prediction and export treat images as training did.
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    command: str | None = None  # the command line that reproduces the run
    extra: dict = dataclasses.field(default_factory=dict)  # keys this schema does not know

    @property
    def final_fit(self):
        """Trained on every training image (validation_split 0): no held-out images of its own."""
        return self.validation_split == 0

    @property
    def image_size(self):
        """(height, width) the model takes, or None when the metadata does not say."""
        return tuple(self.input_shape[:2]) if self.input_shape else None

    @property
    def resize_options(self):
        """`read_image`'s / `load_dataset`'s aspect-ratio arguments, as training used them."""
        return {
            "crop_to_aspect_ratio": bool(self.crop_to_aspect_ratio),
            "pad_to_aspect_ratio": bool(self.pad_to_aspect_ratio),
        }

    @property
    def resize_mode(self):
        """ "stretch", "crop" or "pad": how an image of another shape is fitted to the input."""
        if self.crop_to_aspect_ratio:
            return "crop"
        return "pad" if self.pad_to_aspect_ratio else "stretch"

    @classmethod
    def from_dict(cls, data):
        """From a metadata dict, its values as they are (`inference.check_metadata` checks their
        types); a `RunMetadata` is returned as it is, None reads as {}."""
        if isinstance(data, cls):
            return data
        data = dict(data or {})
        names = [field.name for field in dataclasses.fields(cls) if field.name != "extra"]
        known = {name: data.pop(name) for name in names if name in data}
        return cls(**known, extra=data)

    def to_dict(self):
        """The dict metadata.json holds: every key of the schema (the fine-tuning ones only for
        a fine-tuned run, `OPTIONAL_KEYS` only when set), then the unknown ones as read."""
        payload = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "extra" or (field.name in FINE_TUNING_KEYS and not self.init_from):
                continue
            if field.name in OPTIONAL_KEYS and value == field.default:
                continue
            payload[field.name] = (
                list(value) if field.name in _SEQUENCES and isinstance(value, tuple) else value
            )
        return {**payload, **self.extra}

    @staticmethod
    def path(run_dir):
        return Path(run_dir) / METADATA_FILE

    @classmethod
    def exists(cls, run_dir):
        return cls.path(run_dir).is_file()

    @classmethod
    def read(cls, run_dir):
        """The metadata of the run in `run_dir`: FileNotFoundError when it has none, a one-line
        `SidecarError` naming the file when it is not a JSON object."""
        return cls.from_dict(read_json_object(cls.path(run_dir)))

    def write(self, run_dir):
        """Write metadata.json into `run_dir`, atomically."""
        write_json(self.path(run_dir), self.to_dict())
