"""The one batch transform: tf.data (`make_pipeline`) and the Keras `PyDataset`
(`ArrayBatches`) give the same batches, value for value, from the same images, labels and seeds."""

import dataclasses

import numpy as np
import pytest

from mobilevit_utils import augmentation as aug
from mobilevit_utils import data

NUM_CLASSES, SEED = 4, 7


def images_and_labels(count=20, size=16):
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8),
        np.arange(count) % NUM_CLASSES,
    )


def fresh_options(policy, count, late_start=None):
    """The arguments `training.train` passes for `policy`, with fresh (identically seeded)
    layers and clocks: each driver must get its own, as their random state advances."""
    config = aug.get_augmentation(policy)
    options = {
        "num_classes": NUM_CLASSES,
        "training": True,
        "augmenter": aug.build_augmenter(config, SEED),
        "mixer": aug.build_mixer(config, SEED),
        "soft_labels": True,
        "seed": SEED,
    }
    clocks = []
    if config.flip == "alternating":
        options["flip_schedule"] = data.FlipSchedule(count, SEED)
        clocks.append(options["flip_schedule"])
    if late_start is not None:
        late = data.FromEpoch(aug.build_eraser(config, SEED), late_start, data.EpochClock())
        options["late"] = late
        clocks.append(late.clock)
    return options, clocks


def batches_of(driver, policy, x, y, epochs, late_start=None):
    """Every batch of `epochs` epochs, as NumPy, with the epoch clocks set as fit sets them."""
    options, clocks = fresh_options(policy, len(x), late_start)
    batches = driver(x, y, 8, **options)
    out = []
    for epoch in range(epochs):
        for clock in clocks:
            clock.set_epoch(epoch)
        out.extend((np.asarray(i), np.asarray(lab)) for i, lab in batches)
        if hasattr(batches, "on_epoch_end"):  # fit calls it after each epoch
            batches.on_epoch_end()
    return out


@pytest.mark.parametrize(
    "policy, late_start",
    [
        ("light", None),  # flips + whole-pixel shifts
        ("light_alternating", None),  # the epoch-dependent flip schedule + shifts
        ("mixup", None),
        ("cutmix", None),
        ("light_erasing_late", 1),  # RandomErasing from epoch 1 on: off, then on
    ],
)
def test_tf_data_and_pydataset_give_identical_batches(policy, late_start):
    x, y = images_and_labels()
    tf_data = batches_of(data.make_pipeline, policy, x, y, 2, late_start)
    pydataset = batches_of(data._array_batches_class(), policy, x, y, 2, late_start)
    assert len(tf_data) == len(pydataset) == 4  # 2 epochs of 20 // 8 batches
    for (tf_images, tf_labels), (py_images, py_labels) in zip(tf_data, pydataset):
        np.testing.assert_allclose(tf_images, py_images, rtol=1e-6, atol=1e-3)
        np.testing.assert_allclose(tf_labels, py_labels, rtol=1e-6, atol=1e-6)
    # The comparison means something: the batches are augmented, and differ between epochs.
    firsts = [images for images, _ in tf_data[::2]]
    assert not np.allclose(firsts[0], firsts[1])
    if late_start is not None:  # erasing greys patches in epoch 1 only
        assert not (tf_data[0][0] == 127.5).all(axis=-1).any()
        assert (tf_data[2][0] == 127.5).all(axis=-1).any()


def test_epoch_order_is_a_seeded_permutation_the_same_in_numpy_and_tensorflow():
    import tensorflow as tf

    orders = [data.epoch_order(1000, 42, epoch) for epoch in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(1000))
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], data.epoch_order(1000, 43, 0))
    np.testing.assert_array_equal(orders[0], data.epoch_order(1000, 42, 0))
    in_tf = data.epoch_order(1000, 42, tf.constant(2, tf.int64), data.TENSORFLOW_OPS)
    np.testing.assert_array_equal(in_tf.numpy(), orders[2])


def test_evaluation_batches_are_the_images_in_order_in_both_drivers():
    x, y = images_and_labels(size=8)
    for driver in (data.make_pipeline, data._array_batches_class()):
        batches = [(np.asarray(i), np.asarray(lab)) for i, lab in driver(x, y, 8)]
        assert [len(lab) for _, lab in batches] == [8, 8, 4]  # the partial batch kept
        np.testing.assert_array_equal(np.concatenate([i for i, _ in batches]), x)
        np.testing.assert_array_equal(np.concatenate([lab for _, lab in batches]), y)


def test_transform_options_live_in_one_dataclass():
    fields = {f.name for f in dataclasses.fields(data.BatchTransform)}
    assert fields == {
        "num_classes",
        "training",
        "augmenter",
        "mixer",
        "soft_labels",
        "flip_schedule",
        "late",
    }
    with pytest.raises(data.DataError, match="num_classes"):
        data.BatchTransform(mixer=aug.build_mixer("mixup"))
