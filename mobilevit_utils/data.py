"""Datasets: CIFAR-10 through Keras' download, or a local class-per-folder image tree.

Where the data comes from, in order:

1. `data_dir=` argument, or the `MOBILEVIT_DATA_DIR` environment variable: a local folder with
   `train/<class>/*.jpg` (and optionally `test/<class>/*`), a folder of class folders, or a folder
   holding a `.tar` archive of such a tree (extracted once under the project's `data/`).
2. Otherwise the official CIFAR-10 release through `keras.datasets.cifar10.load_data()` (cached
   in Keras' own cache, `~/.keras/datasets`).

Decoded images are cached as `.npz` under `data/cache/`, keyed by the source files, size and
subset, so 50,000 JPEGs are decoded once, not every epoch or notebook. When the source has no test
split, a stratified, seeded validation split is carved from the training images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mobilevit_utils.environment import DATA_ENV, display_path
from mobilevit_utils.environment import data_dir as default_data_dir

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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
CACHE_VERSION = 1


class DataError(ValueError):
    """The data cannot be loaded; the message says what was expected and what to do."""


class DataUnavailableError(DataError):
    """Neither a local copy nor a download is available."""


class BadImageError(DataError):
    """A file could not be decoded as an image; `reason` says what is wrong with it."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason
        super().__init__(
            f"Cannot decode {path}: it {reason}; leave such files out with --skip-bad-images "
            "(Python: on_error='skip')."
        )


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
# Locating a local dataset


def resolve_local_root(path):
    """The folder holding the class tree: `path`, `path/<name>` inside it, or the extraction of
    a `.tar` archive found in `path` (extracted once under `data/extracted/`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"Data folder {path} does not exist; point --data-dir (Python: data_dir=) or "
            f"{DATA_ENV} at a folder with train/<class>/ images (or the CIFAR-10 JPEG archive)."
        )
    if _has_class_tree(path):
        return path
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not _hidden(p)):
        if _has_class_tree(child) and any((child / split).is_dir() for split in SPLITS):
            return child
    archives = (
        sorted(path.glob("*.tar")) + sorted(path.glob("*.tar.gz")) + sorted(path.glob("*.tgz"))
    )
    if archives:
        return resolve_local_root(_extract(archives[0]))
    raise DataError(
        f"{path} holds no images in class folders; expected {path}/<split>/<class>/*.jpg "
        f"(split: train, val or test), "
        f"{path}/<class>/*.jpg or a .tar archive of that layout."
    )


SPLITS = ("train", "val", "test")


def _hidden(path):
    """Names starting with a dot (.git, .ipynb_checkpoints, macOS's ._* AppleDouble files) and
    macOS's __MACOSX folders are never images or classes (`image_dataset_from_directory`
    ignores dot-names too)."""
    return path.name.startswith(".") or path.name == "__MACOSX"  # zip files made on macOS


def _image_files(folder):
    return sorted(
        f
        for f in folder.iterdir()
        if f.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(f) and not f.is_dir()
    )


def _class_folders(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p))


def _has_class_tree(path):
    roots = [path / split for split in SPLITS if (path / split).is_dir()] or [path]
    return any(_image_files(child) for root in roots for child in _class_folders(root))


def _extract(archive):
    target = default_data_dir() / "extracted" / archive.name.split(".")[0]
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        done.write_text(str(archive))
    return target


def list_image_folder(root, class_names=None):
    """(paths, labels, class_names) of `root/<class>/*`, classes sorted by name like Keras'
    `image_dataset_from_directory`. Files that are not images by extension are ignored.
    With `class_names`, folder names must be among them (labels follow their order). Hidden
    files and folders (names starting with a dot) are ignored; without `class_names`, a class
    folder with no images is refused (it would be a class the model can never learn)."""
    root = Path(root)
    folders = [p.name for p in _class_folders(root)]
    if class_names is None:
        empty = [name for name in folders if not _image_files(root / name)]
        if empty:
            raise DataError(
                f"Class folder {root / empty[0]} holds no images"
                + (f" (nor do {empty[1:]})" if len(empty) > 1 else "")
                + f"; add images (extensions {', '.join(IMAGE_EXTENSIONS)}) or remove it."
            )
        class_names = tuple(folders)
    else:
        unknown = sorted(set(folders) - set(class_names))
        if unknown:
            raise DataError(
                f"{root} has class folders {unknown} that the model does not know; "
                f"expected folder names among {list(class_names)}."
            )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        files = _image_files(folder)
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataError(f"No images found in {root}/<class>/ (extensions {IMAGE_EXTENSIONS}).")
    return paths, np.asarray(labels, dtype="int32"), tuple(class_names)


# --------------------------------------------------------------------------------------------
# Decoding with a cache


def _what_is_wrong(path, error):
    """What a user can act on, instead of PIL's `cannot identify image file <_io.BytesIO ...>`."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "is a broken symbolic link (its target does not exist)"
    if not path.exists():
        return "does not exist (moved or deleted while loading?)"
    if path.is_dir():
        return "is a folder, not an image"
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    if "cannot identify image file" in str(error):
        return "is not an image that Pillow can read (not JPEG, PNG, BMP, GIF...), or is damaged"
    return f"is damaged or truncated ({error.__class__.__name__}: {str(error)[:80]})"


def _decode(path, image_size):
    import keras

    try:
        image = keras.utils.load_img(
            path, color_mode="rgb", target_size=image_size, interpolation="bilinear"
        )
        return np.asarray(image, dtype="uint8")
    except Exception as error:  # PIL raises several types for broken files
        raise BadImageError(path, _what_is_wrong(path, error)) from None


def decode_images(paths, image_size=None, on_error="raise", workers=None):
    """Decode image files to a uint8 array (N, H, W, 3).

    Images must share one size unless `image_size=(h, w)` resizes them. `on_error="skip"` drops
    undecodable files instead of raising; returns (images, kept_indices, skipped_paths).
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    size = tuple(image_size) if image_size else None

    def decode(path):
        try:
            return _decode(path, size)
        except BadImageError as error:
            if on_error == "raise":
                raise
            LOG.warning("skipped %s: it %s", path, error.reason)
            return None

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        decoded = list(pool.map(decode, paths))
    kept = [i for i, image in enumerate(decoded) if image is not None]
    skipped = tuple(str(paths[i]) for i, image in enumerate(decoded) if image is None)
    if skipped:
        LOG.warning("skipped %d unreadable file(s) of %d", len(skipped), len(paths))
    if not kept:
        raise DataError("None of the images could be decoded.")
    shapes = {decoded[i].shape for i in kept}
    if len(shapes) > 1:
        raise DataError(
            f"Images have different sizes {sorted(shapes)[:3]}...; resize them to one size with "
            "--image-size HEIGHT WIDTH (Python: image_size=(height, width))."
        )
    return np.stack([decoded[i] for i in kept]), np.asarray(kept), skipped


def _cache_key(paths, *extra):
    digest = hashlib.sha256(repr((CACHE_VERSION, extra)).encode())
    for path in paths:
        stat = path.stat() if path.exists() else path.lstat()  # a broken link: decoding names it
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _take_per_class(paths, labels, max_per_class):
    if not max_per_class:
        return paths, labels
    keep = _per_class_indices(labels, max_per_class)
    return [paths[i] for i in keep], labels[keep]


def load_split_folder(
    root, class_names=None, image_size=None, max_per_class=None, on_error="raise", cache=True
):
    """Decode `root/<class>/*` (one split) through the `.npz` cache.

    Returns (images, labels, class_names, skipped_paths).
    """
    paths, labels, class_names = list_image_folder(root, class_names)
    paths, labels = _take_per_class(paths, labels, max_per_class)
    key = _cache_key(paths, tuple(image_size or ()), on_error, class_names)
    cache_file = (
        default_data_dir() / "cache" / f"{Path(root).parent.name}-{Path(root).name}-{key}.npz"
    )
    if cache and cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as stored:
            skipped = tuple(stored["skipped"].tolist())
            for path in skipped:  # reported again: the cache must not hide them
                LOG.warning("skipped %s: it could not be read when the cache was made", path)
            return stored["x"], stored["y"], class_names, skipped
    images, kept, skipped = decode_images(paths, image_size, on_error)
    labels = labels[kept]
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, x=images, y=labels, skipped=np.asarray(skipped, dtype=str))
        tmp.replace(cache_file)  # atomic: an interrupted write never leaves a corrupt cache
    return images, labels, class_names, skipped


# --------------------------------------------------------------------------------------------
# Splits


def stratified_split(x, y, validation_split=0.1, seed=42):
    """Seeded split keeping every class's share in both parts (sklearn's stratification).
    `validation_split=0` keeps every image for training (a final fit) and no validation images."""
    from sklearn.model_selection import train_test_split

    if not 0 <= validation_split < 1:
        raise DataError(f"validation_split must be at least 0 and below 1, got {validation_split}.")
    if validation_split == 0:
        return x, y, x[:0], y[:0]
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


def load_image_folder(
    path,
    validation_split=0.1,
    seed=42,
    image_size=None,
    max_per_class=None,
    on_error="raise",
    class_names=None,
    cache=True,
):
    """A local dataset: `train/` (or class folders directly) and optional `test/`."""
    root = resolve_local_root(path)
    train_root = root / "train" if (root / "train").is_dir() else root
    x, y, class_names, skipped = load_split_folder(
        train_root, class_names, image_size, max_per_class, on_error, cache
    )
    if image_size is None:
        image_size = x.shape[1:3]  # a test split must match the training images
    x_train, y_train, x_val, y_val = stratified_split(x, y, validation_split, seed)
    data = ImageDataset(
        x_train,
        y_train,
        x_val,
        y_val,
        class_names,
        source=display_path(root),
        skipped_files=skipped,
    )
    if (root / "test").is_dir():
        data.x_test, data.y_test, _, skipped_test = load_split_folder(
            root / "test", class_names, image_size, max_per_class, on_error, cache
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
    x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, validation_split, seed)
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


def _per_class_indices(labels, count):
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)]))


def load_dataset(
    data_dir=None,
    validation_split=0.1,
    seed=42,
    image_size=None,
    max_per_class=None,
    on_error="raise",
    class_names=None,
):
    """Load the dataset the project trains on (see the module docstring for the order).

    Args:
        data_dir: a local dataset folder; default `MOBILEVIT_DATA_DIR`, else download CIFAR-10.
        validation_split: fraction of the training images held out (stratified, seeded).
        image_size: `(height, width)` to resize to; default keep the source size.
        max_per_class: keep at most this many training images per class (quick mode).
        on_error: "raise" on an undecodable file (naming it) or "skip" it
            (`ImageDataset.skipped_files` lists them).
    """
    data_dir = data_dir or os.environ.get(DATA_ENV) or None
    if data_dir:
        return load_image_folder(
            data_dir, validation_split, seed, image_size, max_per_class, on_error, class_names
        )
    return load_cifar10_download(validation_split, seed, max_per_class)


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


# --------------------------------------------------------------------------------------------
# Class balance


def class_counts(labels, class_names):
    """A pandas Series of images per class, in class order."""
    import pandas as pd

    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    return pd.Series(counts, index=list(class_names), name="images")


def class_weights(labels, num_classes=None):
    """Weights for `model.fit(class_weight=...)` that make every class count equally
    (sklearn's "balanced": n_samples / (n_classes * count))."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    result = {int(c): float(w) for c, w in zip(present, weights)}
    for c in range(num_classes or 0):
        result.setdefault(c, 0.0)
    return result


def imbalanced_subset(x, y, keep_fractions, seed=0):
    """Keep `keep_fractions[c]` of class c's images: a deliberately imbalanced dataset."""
    rng = np.random.default_rng(seed)
    keep = []
    for c, fraction in enumerate(keep_fractions):
        idx = np.flatnonzero(y == c)
        keep.append(rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False))
    keep = np.sort(np.concatenate(keep))
    return x[keep], y[keep]


# --------------------------------------------------------------------------------------------
# Input pipelines


class EpochClock:
    """The epoch that is running, for training transforms that change with it: NumPy code
    reads `epoch`, tf.data pipelines a variable (`tf_epoch`). `training.EpochClockCallback`
    sets it as each epoch begins (fit's index, so a resumed run continues where it stopped)."""

    def __init__(self):
        self.epoch = 0
        self._variable = None  # the tf.data pipeline's copy of `epoch`

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
        if self._variable is not None:
            self._variable.assign(self.epoch)

    def tf_epoch(self):
        """The epoch as a TensorFlow variable: made eagerly, because tf.data traces its map
        functions, where no variable may be created."""
        import tensorflow as tf

        if self._variable is None:
            self._variable = tf.Variable(self.epoch, dtype="int32", trainable=False)
        return self._variable


class FlipSchedule(EpochClock):
    """Alternating flip (airbench): image i is mirrored in epoch e when `bits[i] + e` is odd,
    with `bits` drawn once from `seed`. The first epoch mirrors a random half; every later
    epoch mirrors exactly the images the previous one did not, so any two consecutive epochs
    show each image both ways, where independent random flips repeat a view half the time.
    """

    def __init__(self, num_images, seed=42):
        super().__init__()
        self.bits = np.random.default_rng(seed).integers(0, 2, num_images).astype("int32")

    def mirrored(self, indices):
        """Which of the images at `indices` this epoch mirrors (NumPy)."""
        return (self.bits[indices] + self.epoch) % 2 == 1

    def tf_mirrored(self):
        """A TensorFlow function of image indices, for tf.data."""
        import tensorflow as tf

        bits, epoch = tf.constant(self.bits), self.tf_epoch()
        return lambda indices: tf.equal((tf.gather(bits, indices) + epoch) % 2, 1)


@dataclasses.dataclass
class FromEpoch:
    """A transform of training batches (a Keras preprocessing layer) that starts at epoch
    `start` of `clock`: regularisation for the second half of a long run, say, which would
    slow the first half's learning."""

    layer: object
    start: int
    clock: EpochClock

    def active(self):
        return self.clock.epoch >= self.start


def make_pipeline(
    x,
    y,
    batch_size,
    num_classes=None,
    training=False,
    augmenter=None,
    mixer=None,
    soft_labels=None,
    seed=42,
    parallel=False,
    flip_schedule=None,
    late=None,
):
    """A `tf.data.Dataset` of (float32 images in 0-255, labels) batches.

    Training pipelines shuffle (seeded, reshuffled every epoch), drop the last partial batch,
    augment on the fly and mix (MixUp/CutMix) whole batches; evaluation pipelines only batch.
    Labels are integers, or one-hot when `soft_labels` (implied by a mixer). Works for every
    Keras backend: Keras preprocessing layers run inside tf.data as TensorFlow ops.

    `parallel=True` augments several batches at once (for GPUs, which a sequential map starves);
    the random draws then depend on thread timing, so seeded runs are no longer identical.
    `flip_schedule`: a `FlipSchedule` that mirrors training images before `augmenter` runs.
    `late`: a `FromEpoch` transform applied after `augmenter` from its start epoch on.
    """
    import tensorflow as tf

    soft_labels = mixer is not None if soft_labels is None else soft_labels
    if soft_labels and not num_classes:
        raise DataError("num_classes is needed for one-hot (soft) labels.")
    mirrored = flip_schedule.tf_mirrored() if training and flip_schedule else None
    late = late if training else None
    late_epoch = late.clock.tf_epoch() if late is not None else None
    ds = tf.data.Dataset.from_tensor_slices(
        (x, np.asarray(y, dtype="int32"), np.arange(len(x), dtype="int32"))
    )
    if training:
        ds = ds.shuffle(min(len(x), 50_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training and len(x) >= batch_size)
    autotune = tf.data.AUTOTUNE

    def to_float(images, labels, indices):
        images = tf.cast(images, "float32")
        if mirrored is not None:
            flip = mirrored(indices)[:, None, None, None]
            images = tf.where(flip, tf.reverse(images, axis=[2]), images)
        if training and augmenter is not None:
            images = augmenter(images, training=True)
        if late is not None:
            images = tf.cond(
                late_epoch >= late.start,
                lambda: tf.cast(late.layer(images, training=True), "float32"),
                lambda: images,
            )
        if soft_labels:
            labels = tf.one_hot(labels, num_classes)
        return images, labels

    # Sequential maps: Keras' random layers draw from a seed-generator state, and parallel calls
    # would advance it in a varying order, making seeded runs irreproducible. Whole-batch maps
    # are fast enough (see benchmarks/input_pipeline.py) and prefetching overlaps them with
    # training.
    parallel_map = {"num_parallel_calls": autotune, "deterministic": False} if parallel else {}
    ds = ds.map(to_float, **parallel_map)
    if training and mixer is not None:

        def mix(images, labels):
            mixed = mixer({"images": images, "labels": labels}, training=True)
            return mixed["images"], mixed["labels"]

        ds = ds.map(mix, **parallel_map)
    return ds.prefetch(autotune)


def _array_batches_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """The same batches as `make_pipeline` without TensorFlow (JAX/PyTorch-only installs):
        a `keras.utils.PyDataset` over in-memory arrays; augmentation runs in the backend."""

        def __init__(
            self,
            x,
            y,
            batch_size,
            num_classes=None,
            training=False,
            augmenter=None,
            mixer=None,
            soft_labels=None,
            seed=42,
            parallel=False,
            flip_schedule=None,
            late=None,
            **kwargs,
        ):
            # PyDataset's workers prepare batches in parallel threads (its own prefetching).
            super().__init__(
                **({"workers": 4, "use_multiprocessing": False} if parallel else {}), **kwargs
            )
            self.x, self.y = x, np.asarray(y, dtype="int32")
            self.batch_size, self.num_classes, self.training = batch_size, num_classes, training
            self.augmenter, self.mixer = augmenter, mixer
            self.flip_schedule = flip_schedule if training else None
            self.late = late if training else None
            self.soft_labels = mixer is not None if soft_labels is None else soft_labels
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(x))
            self.on_epoch_end()

        def __len__(self):
            full, rest = divmod(len(self.x), self.batch_size)
            return full if (self.training and full) else full + bool(rest)

        def on_epoch_end(self):
            if self.training:
                self.rng.shuffle(self.order)

        def __getitem__(self, index):
            idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            images = self.x[idx].astype("float32")
            labels = self.y[idx]
            if self.flip_schedule is not None:
                mirrored = self.flip_schedule.mirrored(idx)
                images[mirrored] = images[mirrored, :, ::-1]
            if self.training and self.augmenter is not None:
                images = keras.ops.convert_to_numpy(self.augmenter(images, training=True))
            if self.late is not None and self.late.active():
                images = keras.ops.convert_to_numpy(self.late.layer(images, training=True))
            if self.soft_labels:
                labels = np.eye(self.num_classes, dtype="float32")[labels]
            if self.training and self.mixer is not None:
                mixed = self.mixer({"images": images, "labels": labels}, training=True)
                images = keras.ops.convert_to_numpy(mixed["images"])
                labels = keras.ops.convert_to_numpy(mixed["labels"])
            return images, labels

    return ArrayBatches


def make_batches(x, y, batch_size, **kwargs):
    """`make_pipeline` when TensorFlow is installed, else an equivalent `PyDataset`."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        return make_pipeline(x, y, batch_size, **kwargs)
    return _array_batches_class()(x, y, batch_size, **kwargs)


# --------------------------------------------------------------------------------------------
# Hand-made "features", for comparison with what the network learns


def feature_views(images):
    """Classic hand-engineered views of uint8 RGB images, each scaled to [0, 1]:
    grayscale, HSV channels, YUV channels and the Sobel edge magnitude."""
    import keras
    from keras import ops

    rgb = ops.convert_to_tensor(np.asarray(images, dtype="float32") / 255.0)
    gray = ops.image.rgb_to_grayscale(rgb)
    hsv = ops.convert_to_numpy(ops.image.rgb_to_hsv(rgb))
    # BT.601 luma/chroma; U and V are shifted from [-0.5, 0.5] to [0, 1] for display.
    yuv = np.asarray(rgb) @ np.array(
        [
            [0.299, -0.14714119, 0.61497538],
            [0.587, -0.28886916, -0.51496512],
            [0.114, 0.43601035, -0.10001026],
        ],
        dtype="float32",
    )
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype="float32")
    kernel = np.stack([sobel_x, sobel_x.T], axis=-1)[:, :, None, :]  # (3, 3, 1, 2)
    edges = ops.convert_to_numpy(
        ops.conv(gray, keras.ops.convert_to_tensor(kernel), padding="same")
    )
    magnitude = np.sqrt((edges**2).sum(-1))
    return {
        "grayscale": ops.convert_to_numpy(gray)[..., 0],
        "hue": hsv[..., 0],
        "saturation": hsv[..., 1],
        "value": hsv[..., 2],
        "Y (luma)": np.clip(yuv[..., 0], 0, 1),
        "U": np.clip(yuv[..., 1] + 0.5, 0, 1),
        "V": np.clip(yuv[..., 2] + 0.5, 0, 1),
        "Sobel magnitude": magnitude / max(magnitude.max(), 1e-6),
    }


def measure_throughput(dataset, max_batches=None):
    """Images per second that iterating `dataset` delivers (after one warm-up batch)."""
    import time

    iterator = iter(dataset)
    next(iterator)
    count, start = 0, time.perf_counter()
    for i, (images, _) in enumerate(iterator):
        count += int(images.shape[0])
        if max_batches and i + 1 >= max_batches:
            break
    return count / max(time.perf_counter() - start, 1e-9)


def has_test_split(data_dir=None):
    """Whether the data (`data_dir`, else $MOBILEVIT_DATA_DIR, else the CIFAR-10 download) has
    a test split."""
    local = data_dir or os.environ.get(DATA_ENV)
    return not local or (resolve_local_root(local) / "test").is_dir()
