"""Loading a dataset: a local image folder (decoded once, through a `.npz` cache) or CIFAR-10
through Keras' download, split into train / validation (/ test) as an `ImageDataset`."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from mobilevit_utils.data import decode
from mobilevit_utils.data.errors import DataError, DataUnavailableError
from mobilevit_utils.data.folders import (
    SPLITS,
    list_image_folder,
    resolve_local_root,
    training_folder,
)
from mobilevit_utils.environment import DATA_ENV, display_path, keras_home_dir
from mobilevit_utils.environment import data_dir as default_data_dir
from mobilevit_utils.run_files import atomic_path

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Skipped files are reported here (one warning each, then a count): the command line prints
# them, and Python's last-resort handler shows them in notebooks.
LOG = logging.getLogger("mobilevit_utils.data")
# 2: one decoder (EXIF orientation, 16-bit greyscale, transparency on white), recursive class
# folders and mixed sizes resized: images decoded by version 1 may differ.
CACHE_VERSION = 2


@dataclasses.dataclass
class ImageDataset:
    """uint8 images (N, H, W, 3) and int labels, split into train / validation / test.

    `test` is None when the source has no test split (e.g. the offline CIFAR-10 copy): evaluate
    on `val`, which training never sees.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple
    source: str
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    skipped_files: tuple = ()
    root: str | None = None  # the local folder read, absolute; None for a download

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return tuple(self.x_train.shape[1:])

    def split(self, name):
        """(x, y) of "train", "val" or "test" ("test" falls back to "val" when absent)."""
        if name == "test" and self.x_test is None:
            name = "val"
        if name not in ("train", "val", "test"):
            raise DataError(f"Unknown split {name!r}; expected 'train', 'val' or 'test'.")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def summary(self):
        rows = {"train": len(self.y_train), "val": len(self.y_val)}
        if self.y_test is not None:
            rows["test"] = len(self.y_test)
        parts = ", ".join(f"{k} {v}" for k, v in rows.items())
        return f"{self.source}: {parts} images of {self.image_shape}, {self.num_classes} classes"


# --------------------------------------------------------------------------------------------
# Decoding a folder with a cache


def _cache_key(root, paths, *extra):
    """A digest of the files (by their path under `root` resolved, so that a folder given as a
    relative or an absolute path, or through a link, is one cache entry), their sizes and times,
    and `extra` (how they are decoded)."""
    digest = hashlib.sha256(repr((CACHE_VERSION, extra)).encode())
    resolved = Path(root).resolve()
    for path in paths:
        stat = path.stat() if path.exists() else path.lstat()  # a broken link: decoding names it
        where = resolved / Path(path).relative_to(root)
        digest.update(f"{where}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cache_file(root, key):
    """`data/cache/<dataset>-<split>-<key>.npz`, named after the resolved folder: never a name
    starting with "-" (which a shell command would take for an option). Never inside the data
    it caches (a dataset that is itself `./data` would gain a `cache` "class"): then under
    Keras' home (`~/.keras/mobilevit/cache`, or `KERAS_HOME`)."""
    resolved = Path(root).resolve()
    parts = [part.lstrip("-.") for part in (resolved.parent.name, resolved.name)]
    name = "-".join([*(part for part in parts if part), key])
    folder = default_data_dir() / "cache"
    data = resolved.parent if resolved.name in SPLITS else resolved
    if folder.resolve().is_relative_to(data):
        folder = keras_home_dir() / "cache"
    return folder / f"{name}.npz"


def _take_per_class(paths, labels, max_per_class):
    if not max_per_class:
        return paths, labels
    keep = _per_class_indices(labels, max_per_class)
    return [paths[i] for i in keep], labels[keep]


def _per_class_indices(labels, count):
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)]))


def load_split_folder(
    root,
    class_names=None,
    image_size=None,
    max_per_class=None,
    on_error="raise",
    cache=True,
    crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False,
):
    """Decode `root/<class>/**` (one split) through the `.npz` cache.

    Images of differing sizes without `image_size` are resized to the most common one (see
    `decode.decode_images`). Returns (images, labels, class_names, skipped_paths).
    """
    paths, labels, class_names = list_image_folder(root, class_names)
    paths, labels = _take_per_class(paths, labels, max_per_class)
    resize = (tuple(image_size or ()), bool(crop_to_aspect_ratio), bool(pad_to_aspect_ratio))
    cached = cache_file(root, _cache_key(root, paths, resize, on_error, class_names))
    if cache and cached.exists():
        with np.load(cached, allow_pickle=False) as stored:
            skipped = tuple(stored["skipped"].tolist())
            for path in skipped:  # reported again: the cache must not hide them
                LOG.warning("skipped %s: it could not be read when the cache was made", path)
            return stored["x"], stored["y"], class_names, skipped
    images, kept, skipped = decode_images(
        paths,
        image_size,
        on_error,
        crop_to_aspect_ratio=crop_to_aspect_ratio,
        pad_to_aspect_ratio=pad_to_aspect_ratio,
    )
    labels = labels[kept]
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Written under a name of its own, then renamed over the cache: an interrupted write
        # never leaves a corrupt cache, and two processes decoding the same data at once each
        # write a whole file (the last rename wins) instead of writing into one.
        with atomic_path(cached) as temporary:
            np.savez(temporary, x=images, y=labels, skipped=np.asarray(skipped, dtype=str))
    return images, labels, class_names, skipped


def decode_images(paths, *args, **kwargs):
    """`decode.decode_images` (looked up here at call time, so tests can count decodings)."""
    return decode.decode_images(paths, *args, **kwargs)


# --------------------------------------------------------------------------------------------
# Splits


def _check_stratifiable(y, class_names):
    counts = np.bincount(y)
    few = [int(c) for c in np.flatnonzero((counts > 0) & (counts < 2))]
    if few:
        names = [class_names[c] if class_names else f"label {c}" for c in few]
        raise DataError(
            f"Class {names[0]!r} has only 1 image"
            + (f" (so do {names[1:]})" if len(names) > 1 else "")
            + "; a validation split needs at least 2 images of every class (one to learn from, "
            "one to validate on): add images, remove the class folder, or keep every image for "
            "training with --validation-split 0 (Python: validation_split=0)."
        )


def stratified_split(x, y, validation_split=0.1, seed=42, class_names=None):
    """Seeded split keeping every class's share in both parts (sklearn's stratification).
    `validation_split=0` keeps every image for training (a final fit) and no validation images.
    `class_names` name a class with too few images in the error."""
    from sklearn.model_selection import train_test_split

    if not 0 <= validation_split < 1:
        raise DataError(f"validation_split must be at least 0 and below 1, got {validation_split}.")
    if validation_split == 0:
        return x, y, x[:0], y[:0]
    y = np.asarray(y)
    _check_stratifiable(y, class_names)
    num_classes = len(np.unique(y))
    # At least one validation image per class, so that stratification is possible at all.
    num_val = max(int(round(validation_split * len(y))), num_classes)
    if len(y) - num_val < num_classes:
        raise DataError(
            f"{len(y)} images are too few to split {num_classes} classes into train and "
            "validation; add images or lower validation_split."
        )
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=num_val, random_state=seed, stratify=y
    )
    return x_train, y_train, x_val, y_val


# --------------------------------------------------------------------------------------------
# The sources


def load_image_folder(
    path,
    validation_split=0.1,
    seed=42,
    image_size=None,
    max_per_class=None,
    on_error="raise",
    class_names=None,
    cache=True,
    crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False,
):
    """A local dataset: `train/` (or class folders directly) and optional `test/`."""
    root = resolve_local_root(path)
    resize = {
        "crop_to_aspect_ratio": crop_to_aspect_ratio,
        "pad_to_aspect_ratio": pad_to_aspect_ratio,
    }
    x, y, class_names, skipped = load_split_folder(
        training_folder(root), class_names, image_size, max_per_class, on_error, cache, **resize
    )
    if image_size is None:
        image_size = x.shape[1:3]  # a test split must match the training images
    x_train, y_train, x_val, y_val = stratified_split(x, y, validation_split, seed, class_names)
    data = ImageDataset(
        x_train,
        y_train,
        x_val,
        y_val,
        class_names,
        source=display_path(root),
        skipped_files=skipped,
        root=str(Path(root).resolve()),
    )
    if (root / "test").is_dir():
        data.x_test, data.y_test, _, skipped_test = load_split_folder(
            root / "test", class_names, image_size, max_per_class, on_error, cache, **resize
        )
        data.skipped_files += skipped_test
    return data


def load_cifar10_download(validation_split=0.1, seed=42, max_per_class=None):
    """The official CIFAR-10 release through Keras' download and cache."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:
        raise DataUnavailableError(
            f"CIFAR-10 could not be downloaded ({error.__class__.__name__}: no internet?). "
            f"Pass --data-dir FOLDER (Python: data_dir=) or set {DATA_ENV}=FOLDER: class "
            "folders, or the CIFAR-10 JPEG archive."
        ) from None
    y_train, y_test = y_train.reshape(-1).astype("int32"), y_test.reshape(-1).astype("int32")
    if max_per_class:
        idx_train = _per_class_indices(y_train, max_per_class)
        idx_test = _per_class_indices(y_test, max(1, max_per_class // 5))
        x_train, y_train, x_test, y_test = (
            x_train[idx_train],
            y_train[idx_train],
            x_test[idx_test],
            y_test[idx_test],
        )
    x_train, y_train, x_val, y_val = stratified_split(
        x_train, y_train, validation_split, seed, CIFAR10_CLASSES
    )
    return ImageDataset(
        x_train,
        y_train,
        x_val,
        y_val,
        CIFAR10_CLASSES,
        "keras.datasets.cifar10",
        x_test=x_test,
        y_test=y_test,
    )


def load_dataset(
    data_dir=None,
    validation_split=0.1,
    seed=42,
    image_size=None,
    max_per_class=None,
    on_error="raise",
    class_names=None,
    crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False,
):
    """Load the dataset the project trains on (see the package docstring for the order).

    Args:
        data_dir: a local dataset folder; default `MOBILEVIT_DATA_DIR`, else download CIFAR-10.
        validation_split: fraction of the training images held out (stratified, seeded).
        image_size: `(height, width)` to resize to (a model's input size); default keep the
            source size, or the most common size when a folder's images differ.
        max_per_class: keep at most this many training images per class (quick mode).
        on_error: "raise" on an undecodable file (naming it) or "skip" it
            (`ImageDataset.skipped_files` lists them).
        class_names: the classes a model knows (folder names must be among them).
        crop_to_aspect_ratio / pad_to_aspect_ratio: resize a folder's images without
            distorting them, by cropping their centre or padding them (Keras' conventions);
            default stretch them.
    """
    data_dir = data_dir or os.environ.get(DATA_ENV) or None
    if data_dir:
        return load_image_folder(
            data_dir,
            validation_split,
            seed,
            image_size,
            max_per_class,
            on_error,
            class_names,
            crop_to_aspect_ratio=crop_to_aspect_ratio,
            pad_to_aspect_ratio=pad_to_aspect_ratio,
        )
    return load_cifar10_download(validation_split, seed, max_per_class)


def has_test_split(data_dir=None):
    """Whether the data (`data_dir`, else $MOBILEVIT_DATA_DIR, else the CIFAR-10 download) has
    a test split."""
    local = data_dir or os.environ.get(DATA_ENV)
    return not local or (resolve_local_root(local) / "test").is_dir()


# --------------------------------------------------------------------------------------------
# A small real dataset that ships with scikit-learn, for trying things on "your own" images


def load_digits_images(size=32):
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels) as uint8 RGB images
    (N, size, size, 3), enlarged bilinearly, and their labels 0-9: data nobody here made, in a
    shape this project's models take."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = (bunch.images * (255 / 16)).round().astype("uint8")
    big = np.stack(
        [np.asarray(Image.fromarray(i).resize((size, size), Image.BILINEAR)) for i in small]
    )
    return np.repeat(big[..., None], 3, axis=-1), bunch.target.astype("int32")


def save_image_folder(root, images, labels, class_names, split="train"):
    """Write images as `root/<split>/<class name>/NNNN.png`: the layout `load_dataset` reads.
    Returns `root`."""
    from PIL import Image

    root = Path(root)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / split / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root
