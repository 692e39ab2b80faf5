"""Datasets: CIFAR-10 through Keras' download, or a local class-per-folder image tree, and the
batches training takes from them.

Where the data comes from, in order:

1. `data_dir=` argument, or the `MOBILEVIT_DATA_DIR` environment variable: a local folder with
   `train/<class>/*.jpg` (and optionally `test/<class>/*`), a folder of class folders, or a `.tar`
   archive of such a tree (or a folder holding one; extracted once under the project's `data/`).
2. Otherwise the official CIFAR-10 release through `keras.datasets.cifar10.load_data()` (cached
   in Keras' own cache, `~/.keras/datasets`).

Decoded images are cached as `.npz` under `data/cache/`, keyed by the source files, size and
subset, so 50,000 JPEGs are decoded once, not every epoch or notebook. When the source has no test
split, a stratified, seeded validation split is carved from the training images.

The parts, one role each (every public name is importable from `mobilevit_utils.data`):

- `errors`: `DataError` and its kinds, one-line messages that say what to do;
- `folders`: finding a dataset on disk (split folders, class folders, archives);
- `decode`: the one image decoder (`read_image`) every path uses, and `decode_images`;
- `sources`: `load_dataset` and its sources, the `.npz` cache, `stratified_split`;
- `pipeline`: the one batch transform (`BatchTransform`) and its drivers, tf.data
  (`make_pipeline`) and `PyDataset` (`make_batches` without TensorFlow);
- `analysis`: class balance and hand-made image features, for the notebooks.
"""

from mobilevit_utils.data.analysis import (
    class_counts,
    class_weights,
    feature_views,
    imbalanced_subset,
)
from mobilevit_utils.data.decode import (
    INTERPOLATION,
    LOG,
    common_size,
    decode_images,
    read_image,
    resize_image,
    to_rgb,
)
from mobilevit_utils.data.errors import BadImageError, DataError, DataUnavailableError
from mobilevit_utils.data.folders import (
    IMAGE_EXTENSIONS,
    SPLITS,
    UNREAD_EXTENSIONS,
    iter_image_files,
    list_image_folder,
    report_unread,
    resolve_local_root,
    split_folders,
    training_folder,
)
from mobilevit_utils.data.pipeline import (
    NUMPY_OPS,
    TENSORFLOW_OPS,
    BatchTransform,
    EpochClock,
    FlipSchedule,
    FromEpoch,
    epoch_order,
    make_batches,
    make_pipeline,
    measure_throughput,
)
from mobilevit_utils.data.pipeline import (  # the PyDataset driver's class, for tests
    _array_batches_class as _array_batches_class,
)
from mobilevit_utils.data.sources import (
    CACHE_VERSION,
    CIFAR10_CLASSES,
    ImageDataset,
    has_test_split,
    load_cifar10_download,
    load_dataset,
    load_digits_images,
    load_image_folder,
    load_split_folder,
    save_image_folder,
    stratified_split,
)

__all__ = [
    "BadImageError",
    "BatchTransform",
    "CACHE_VERSION",
    "CIFAR10_CLASSES",
    "DataError",
    "DataUnavailableError",
    "EpochClock",
    "FlipSchedule",
    "FromEpoch",
    "IMAGE_EXTENSIONS",
    "INTERPOLATION",
    "ImageDataset",
    "LOG",
    "NUMPY_OPS",
    "SPLITS",
    "TENSORFLOW_OPS",
    "UNREAD_EXTENSIONS",
    "class_counts",
    "class_weights",
    "common_size",
    "decode_images",
    "epoch_order",
    "feature_views",
    "has_test_split",
    "imbalanced_subset",
    "iter_image_files",
    "list_image_folder",
    "load_cifar10_download",
    "load_dataset",
    "load_digits_images",
    "load_image_folder",
    "load_split_folder",
    "make_batches",
    "make_pipeline",
    "measure_throughput",
    "read_image",
    "report_unread",
    "resize_image",
    "resolve_local_root",
    "save_image_folder",
    "split_folders",
    "stratified_split",
    "to_rgb",
    "training_folder",
]
