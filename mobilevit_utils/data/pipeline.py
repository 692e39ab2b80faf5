"""Batches for `fit`: one batch transform, driven by tf.data or by a Keras `PyDataset`.

`make_pipeline` (a `tf.data.Dataset`, when TensorFlow is installed) and `ArrayBatches` (a
`keras.utils.PyDataset` over in-memory arrays, for JAX/PyTorch-only installs) share everything
that decides what a batch holds:

- the order of the images: `epoch_order`, a permutation per (seed, epoch) computed by the same
  integer hash in TensorFlow and in NumPy;
- the transform: `BatchTransform` (flip schedule, augmenter, late transform, one-hot labels,
  MixUp/CutMix), written once against a small set of array operations (`NUMPY_OPS`,
  `TENSORFLOW_OPS`). Each random Keras layer draws from its own seed generator once per
  batch, in batch order, in both drivers.

So on the TensorFlow backend, with the same seeds, both drivers give the same batches value
for value (tests/unit/test_pipeline.py checks it). On JAX or PyTorch, `ArrayBatches` draws from that
backend's random generator: the same images in the same order, other random numbers.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mobilevit_utils.data.errors import DataError

# --------------------------------------------------------------------------------------------
# The few array operations the transform needs, in NumPy and in TensorFlow


class NumpyOps:
    """For `ArrayBatches`: Keras layers run eagerly in the backend; results come back to NumPy."""

    @staticmethod
    def float32(x):
        import keras

        return np.asarray(keras.ops.convert_to_numpy(x), dtype="float32")

    gather = staticmethod(lambda values, indices: np.asarray(values)[indices])
    mirror = staticmethod(lambda images: images[:, :, ::-1])
    where_rows = staticmethod(lambda mask, a, b: np.where(mask[:, None, None, None], a, b))
    cond = staticmethod(lambda predicate, then, otherwise: then() if predicate else otherwise())
    one_hot = staticmethod(lambda labels, n: np.eye(n, dtype="float32")[labels])
    epoch = staticmethod(lambda clock: clock.epoch)
    xor = staticmethod(np.bitwise_xor)
    arange = staticmethod(lambda count: np.arange(count, dtype=np.int64))
    argsort = staticmethod(lambda keys: np.argsort(keys, kind="stable").astype("int32"))


class TensorFlowOps:
    """For `make_pipeline`: TensorFlow ops, traced by tf.data (where Keras' preprocessing
    layers run as TensorFlow ops whatever the backend)."""

    @staticmethod
    def _tf():
        import tensorflow as tf

        return tf

    float32 = staticmethod(lambda x: TensorFlowOps._tf().cast(x, "float32"))
    gather = staticmethod(lambda values, indices: TensorFlowOps._tf().gather(values, indices))
    mirror = staticmethod(lambda images: TensorFlowOps._tf().reverse(images, axis=[2]))
    where_rows = staticmethod(
        lambda mask, a, b: TensorFlowOps._tf().where(mask[:, None, None, None], a, b)
    )
    cond = staticmethod(
        lambda predicate, then, otherwise: TensorFlowOps._tf().cond(predicate, then, otherwise)
    )
    one_hot = staticmethod(lambda labels, n: TensorFlowOps._tf().one_hot(labels, n))
    epoch = staticmethod(lambda clock: clock.tf_epoch())
    xor = staticmethod(lambda a, b: TensorFlowOps._tf().bitwise.bitwise_xor(a, b))
    arange = staticmethod(lambda count: TensorFlowOps._tf().range(count, dtype="int64"))
    argsort = staticmethod(lambda keys: TensorFlowOps._tf().argsort(keys, stable=True))


NUMPY_OPS, TENSORFLOW_OPS = NumpyOps, TensorFlowOps

# --------------------------------------------------------------------------------------------
# The order of the images in each epoch

_MASK = 0xFFFFFFFF


def _mul32(h, constant):
    """(h * constant) mod 2**32 for 32-bit h held in int64, without int64 overflow."""
    low, high = h & 0xFFFF, h // 65536
    return (low * constant + ((high * (constant & 0xFFFF)) & 0xFFFF) * 65536) & _MASK


def _mix32(h, ops):
    """MurmurHash3's 32-bit finaliser: a bijection of 32-bit integers that scrambles bits."""
    h = ops.xor(h, h // 65536)
    h = _mul32(h, 0x85EBCA6B)
    h = ops.xor(h, h // 8192)
    h = _mul32(h, 0xC2B2AE35)
    return ops.xor(h, h // 65536)


def epoch_order(count, seed, epoch, ops=NUMPY_OPS):
    """A permutation of range(count) that depends only on (seed, epoch): the images sorted by
    a hash of their index, computed alike by NumPy and TensorFlow (`epoch` may be a tensor).
    The hash is a bijection, so no two keys tie."""
    seed_part = ((seed & _MASK) * 0x9E3779B9 + 0x632BE5AB) & _MASK
    base = _mix32((epoch * 0x7FEB352D + seed_part) & _MASK, ops)
    keys = _mix32((_mul32(ops.arange(count), 0x9E3779B9) + base) & _MASK, ops)
    return ops.argsort(keys)


# --------------------------------------------------------------------------------------------
# Transforms that change with the epoch


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
            with tf.init_scope():
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

    def mirrored(self, indices, ops=NUMPY_OPS):
        """Which of the images at `indices` this epoch mirrors."""
        return (ops.gather(self.bits, indices) + ops.epoch(self)) % 2 == 1


@dataclasses.dataclass
class FromEpoch:
    """A transform of training batches (a Keras preprocessing layer) that starts at epoch
    `start` of `clock`: regularisation for the second half of a long run, say, which would
    slow the first half's learning."""

    layer: object
    start: int
    clock: EpochClock

    def active(self, ops=NUMPY_OPS):
        return ops.epoch(self.clock) >= self.start


# --------------------------------------------------------------------------------------------
# The batch transform


@dataclasses.dataclass
class BatchTransform:
    """What turns a batch of uint8 images and int labels into what `fit` takes: float32
    images in 0-255 and int labels, or one-hot ones when `soft_labels` (implied by a mixer).

    Training batches, in this order: `flip_schedule` (a `FlipSchedule`) mirrors images,
    `augmenter` transforms them, `late` (a `FromEpoch`) from its start epoch on, then labels
    become one-hot and `mixer` (MixUp/CutMix) blends pairs. Evaluation batches are only cast
    (and one-hot encoded when `soft_labels`). The same object serves tf.data
    (`ops=TENSORFLOW_OPS`) and `PyDataset` (`ops=NUMPY_OPS`).
    """

    num_classes: int | None = None
    training: bool = False
    augmenter: object = None
    mixer: object = None
    soft_labels: bool | None = None
    flip_schedule: FlipSchedule | None = None
    late: FromEpoch | None = None

    def __post_init__(self):
        if self.soft_labels is None:
            self.soft_labels = self.mixer is not None
        if self.soft_labels and not self.num_classes:
            raise DataError("num_classes is needed for one-hot (soft) labels.")

    def __call__(self, images, labels, indices, ops=NUMPY_OPS):
        images = ops.float32(images)
        if self.training and self.flip_schedule is not None:
            mirrored = self.flip_schedule.mirrored(indices, ops)
            images = ops.where_rows(mirrored, ops.mirror(images), images)
        if self.training and self.augmenter is not None:
            images = ops.float32(self.augmenter(images, training=True))
        if self.training and self.late is not None:
            late, before = self.late, images
            images = ops.cond(
                late.active(ops),
                lambda: ops.float32(late.layer(before, training=True)),
                lambda: before,
            )
        if self.soft_labels:
            labels = ops.one_hot(labels, self.num_classes)
        if self.training and self.mixer is not None:
            mixed = self.mixer({"images": images, "labels": labels}, training=True)
            images, labels = ops.float32(mixed["images"]), ops.float32(mixed["labels"])
        return images, labels


def _num_batches(count, batch_size, training):
    full, rest = divmod(count, batch_size)
    return full if (training and full) else full + bool(rest)


# --------------------------------------------------------------------------------------------
# The two drivers


def make_pipeline(x, y, batch_size, *, seed=42, parallel=False, **transform):
    """A `tf.data.Dataset` of (float32 images in 0-255, labels) batches.

    `transform`: the `BatchTransform` fields (num_classes, training, augmenter, mixer,
    soft_labels, flip_schedule, late). Training pipelines visit the images in a new seeded
    order every pass (`epoch_order`), drop the last partial batch and transform each batch;
    evaluation pipelines only batch. Works for every Keras backend: Keras preprocessing
    layers run inside tf.data as TensorFlow ops.

    `parallel=True` transforms several batches at once (for GPUs, which a sequential map
    starves); the random draws then depend on thread timing, so seeded runs are no longer
    identical.
    """
    import tensorflow as tf

    transform = BatchTransform(**transform)
    count, training = len(x), transform.training
    images = tf.convert_to_tensor(x)  # eager tensors: captured by reference, not copied
    labels = tf.convert_to_tensor(np.asarray(y, dtype="int32"))
    if training:
        with tf.init_scope():
            passes = tf.Variable(-1, dtype="int64", trainable=False)  # +1 on every pass

        def order(_):
            return epoch_order(count, seed, passes.assign_add(1), TENSORFLOW_OPS)

        ds = tf.data.Dataset.from_tensors(np.int64(0)).map(order).unbatch()
    else:
        ds = tf.data.Dataset.range(count)
    ds = ds.batch(batch_size, drop_remainder=training and count >= batch_size)

    def load(indices):
        batch = tf.gather(images, indices), tf.gather(labels, indices)
        return transform(*batch, indices, TENSORFLOW_OPS)

    # Sequential maps: Keras' random layers draw from a seed-generator state, and parallel calls
    # would advance it in a varying order, making seeded runs irreproducible. Whole-batch maps
    # are fast enough (see benchmarks/input_pipeline.py) and prefetching overlaps them with
    # training.
    autotune = tf.data.AUTOTUNE
    parallel_map = {"num_parallel_calls": autotune, "deterministic": False} if parallel else {}
    ds = ds.map(load, **parallel_map)
    num_batches = _num_batches(count, batch_size, training)
    return ds.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(autotune)


_PY_DATASET_ARGUMENTS = ("workers", "use_multiprocessing", "max_queue_size")


@functools.cache
def _array_batches_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """The same batches as `make_pipeline` without TensorFlow (JAX/PyTorch-only installs):
        a `keras.utils.PyDataset` over in-memory arrays; augmentation runs in the backend.
        Takes `make_pipeline`'s arguments (and PyDataset's)."""

        def __init__(self, x, y, batch_size, *, seed=42, parallel=False, **transform):
            pydataset = {k: transform.pop(k) for k in _PY_DATASET_ARGUMENTS if k in transform}
            if parallel:  # PyDataset's workers prepare batches in threads (its prefetching)
                pydataset = {"workers": 4, "use_multiprocessing": False, **pydataset}
            super().__init__(**pydataset)
            self.x, self.y = x, np.asarray(y, dtype="int32")
            self.batch_size, self.seed = batch_size, seed
            self.transform = BatchTransform(**transform)
            self.epoch = 0  # passes completed: the order's epoch, as make_pipeline counts them
            self.order = self._order()

        def _order(self):
            if not self.transform.training:
                return np.arange(len(self.x))
            return epoch_order(len(self.x), self.seed, self.epoch)

        def __len__(self):
            return _num_batches(len(self.x), self.batch_size, self.transform.training)

        def on_epoch_end(self):
            if self.transform.training:
                self.epoch += 1
                self.order = self._order()

        def __getitem__(self, index):
            idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            return self.transform(self.x[idx], self.y[idx], idx, NUMPY_OPS)

    return ArrayBatches


def make_batches(x, y, batch_size, **kwargs):
    """`make_pipeline` when TensorFlow is installed, else the equivalent `PyDataset`."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        return make_pipeline(x, y, batch_size, **kwargs)
    return _array_batches_class()(x, y, batch_size, **kwargs)


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
