import keras
import numpy as np
import pytest
from helpers import random_images, write_image_tree
from PIL import Image

from mobilevit_utils import augmentation as aug
from mobilevit_utils import data


def make_tree(root, per_class=(6, 6, 6), size=(12, 10), split="train", seed=0):
    names = ["cat", "dog", "emu"][: len(per_class)]
    labels = np.repeat(np.arange(len(per_class)), per_class)
    write_image_tree(root / split, random_images(len(labels), size, seed), labels, names)
    return names


def test_loads_class_folders_with_stratified_split(project):
    names = make_tree(project / "ds", per_class=(10, 20, 30))
    ds = data.load_dataset(project / "ds", validation_split=0.2, seed=1)
    assert ds.class_names == tuple(names)
    assert ds.x_train.dtype == np.uint8 and ds.image_shape == (12, 10, 3)
    assert len(ds.y_train) + len(ds.y_val) == 60
    np.testing.assert_array_equal(np.bincount(ds.y_val), [2, 4, 6])  # 20 % of each class
    assert ds.x_test is None and ds.split("test")[0] is ds.x_val
    again = data.load_dataset(project / "ds", validation_split=0.2, seed=1)
    np.testing.assert_array_equal(again.y_val, ds.y_val)


def test_test_split_resizing_and_environment_variable(project, monkeypatch):
    make_tree(project / "ds", per_class=(4, 4), size=(20, 16))
    make_tree(project / "ds", per_class=(2, 2), size=(20, 16), split="test", seed=1)
    monkeypatch.setenv("MOBILEVIT_DATA_DIR", str(project / "ds"))
    ds = data.load_dataset(image_size=(8, 8), validation_split=0.25)
    assert ds.image_shape == (8, 8, 3) and ds.x_test.shape == (4, 8, 8, 3)


def test_tar_archive_is_extracted_once_under_data(project):
    import tarfile

    make_tree(project / "src" / "cifar", per_class=(3, 3))
    (project / "shared").mkdir()
    with tarfile.open(project / "shared" / "images.tar", "w") as tar:
        tar.add(project / "src" / "cifar", arcname="cifar")
    ds = data.load_dataset(project / "shared", validation_split=0.5)
    assert (project / "data" / "extracted" / "images" / "cifar").is_dir()
    assert ds.source == "data/extracted/images/cifar"  # relative: no machine path in results
    assert len(ds.y_train) == 3


def test_decoded_images_are_cached_and_reused(project, monkeypatch):
    make_tree(project / "ds")
    first = data.load_dataset(project / "ds")
    assert len(list((project / "data" / "cache").glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(data.sources, "decode_images", fail)
    second = data.load_dataset(project / "ds")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    # A changed source invalidates the cache.
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(
        project / "ds" / "train" / "cat" / "new.png"
    )
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_dataset(project / "ds")


def test_two_writers_of_one_cache_do_not_corrupt_it(project, monkeypatch):
    """Two trains decoding the same data at once write the same cache: each writes a whole file
    of its own and renames it, so the cache that stays loads and holds the data."""
    import threading

    make_tree(project / "ds")
    together = threading.Barrier(2, timeout=30)
    savez = np.savez

    def savez_at_once(path, **arrays):  # both writers write at the same moment
        together.wait()
        savez(path, **arrays)
        together.wait()  # and rename only once both have written

    monkeypatch.setattr(np, "savez", savez_at_once)
    results, failures = [], []

    def load():
        try:
            results.append(data.load_split_folder(project / "ds" / "train"))
        except BaseException as error:  # shown by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    (cached,) = (project / "data" / "cache").iterdir()  # one cache, no temporary left
    assert not cached.name.startswith(".")
    monkeypatch.setattr(np, "savez", savez)

    def fail(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(data.sources, "decode_images", fail)
    x, y, _, _ = data.load_split_folder(project / "ds" / "train")
    for written in results:
        np.testing.assert_array_equal(x, written[0])
        np.testing.assert_array_equal(y, written[1])


def test_the_cache_never_lands_inside_the_data(tmp_path, monkeypatch):
    """Outside a checkout the cache goes to ./data/cache: where the dataset itself is ./data
    (classes in it, or train/ and test/), that would add a `cache` "class" to it and break the
    next run. It goes beside Keras' downloads instead, and the data folder is left as it was."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOBILEVIT_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    make_tree(tmp_path / "data")  # data/train/<class>/...
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*"))
    first = data.load_dataset(tmp_path / "data")
    again = data.load_dataset(tmp_path / "data")  # the next run reads the same classes
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*")) == before
    assert list((tmp_path / "home" / "mobilevit" / "cache").glob("*.npz"))
    assert again.class_names == first.class_names
    flat = tmp_path / "flat"
    flat.mkdir()
    monkeypatch.chdir(flat)
    make_tree(flat, split="data")  # the classes directly in ./data
    data.load_dataset(flat / "data")
    assert not (flat / "data" / "cache").exists()
    assert data.load_dataset(flat / "data").class_names == first.class_names


def test_corrupted_file_is_named_or_skipped_and_non_images_ignored(project):
    make_tree(project / "ds")
    bad = project / "ds" / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    (project / "ds" / "train" / "cat" / "notes.txt").write_text("ignore me")
    with pytest.raises(data.BadImageError, match="broken.jpg"):
        data.load_dataset(project / "ds")
    ds = data.load_dataset(project / "ds", on_error="skip")
    assert ds.skipped_files == (str(bad),)
    assert len(ds.y_train) + len(ds.y_val) == 18


def test_missing_data_messages_say_what_to_do(project, monkeypatch):
    with pytest.raises(data.DataError, match="MOBILEVIT_DATA_DIR"):
        data.load_dataset(project / "nowhere")
    (project / "empty").mkdir()
    with pytest.raises(data.DataError, match="<split>/<class>"):
        data.load_dataset(project / "empty")

    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/: [Errno -3] DNS")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(data.DataUnavailableError) as info:
        data.load_dataset()
    message = str(info.value)
    assert "no internet" in message and "MOBILEVIT_DATA_DIR" in message and "\n" not in message


def test_unknown_class_folder_is_an_error(project):
    make_tree(project / "ds")
    with pytest.raises(data.DataError, match="emu"):
        data.list_image_folder(project / "ds" / "train", class_names=("cat", "dog"))


def test_class_balance_helpers():
    y = np.array([0] * 90 + [1] * 10)
    weights = data.class_weights(y, num_classes=3)
    assert weights[0] == pytest.approx(100 / (2 * 90)) and weights[1] == pytest.approx(5.0)
    assert weights[2] == 0.0
    counts = data.class_counts(y, ["a", "b", "c"])
    assert counts.tolist() == [90, 10, 0]
    x = np.arange(100)
    xs, ys = data.imbalanced_subset(x, y, [0.5, 0.2], seed=0)
    assert np.bincount(ys).tolist() == [45, 2]


@pytest.mark.parametrize("preset", ["light", "medium", "strong"])
def test_augmentation_keeps_shapes_and_range_and_is_seeded(preset):
    images = np.random.default_rng(0).uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
    outputs = []
    for _ in range(2):
        augmenter = aug.build_augmenter(preset, seed=7)
        outputs.append(keras.ops.convert_to_numpy(augmenter(images, training=True)))
    assert outputs[0].shape == images.shape
    assert outputs[0].min() >= 0 and outputs[0].max() <= 255
    assert not np.allclose(outputs[0], images)
    np.testing.assert_allclose(outputs[0], outputs[1])
    # Off for evaluation.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(aug.build_augmenter(preset, seed=7)(images, training=False)),
        images,
    )


def test_fixed_views_show_every_transform_at_full_strength():
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    views = aug.fixed_views("medium")
    labels = [label for label, _ in views]
    assert labels[:3] == ["flipped", "shifted 4 px", "rotated 14°"]
    for label, view in views:
        first, again = (keras.ops.convert_to_numpy(view(images)) for _ in range(2))
        np.testing.assert_array_equal(first, again)  # fixed, not drawn
        assert first.shape == images.shape and 0 <= first.min() and first.max() <= 255
        assert np.abs(first - images).mean() > 1, label  # visibly changed
    np.testing.assert_array_equal(views[0][1](images), images[:, :, ::-1])
    # A 4-pixel shift moves whole pixels: the shifted image is the original, displaced.
    shifted = keras.ops.convert_to_numpy(views[1][1](images))
    np.testing.assert_array_equal(shifted[:, 4:, 4:], images[:, :-4, :-4])


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixing_gives_soft_labels_that_sum_to_one(mix):
    config = aug.AugmentationConfig(mix=mix, mix_alpha=1.0)
    assert config.soft_labels
    images = np.random.default_rng(0).uniform(0, 255, size=(16, 32, 32, 3)).astype("float32")
    labels = np.eye(10, dtype="float32")[np.arange(16) % 10]
    out = aug.build_mixer(config, seed=3)({"images": images, "labels": labels}, training=True)
    mixed = keras.ops.convert_to_numpy(out["labels"])
    np.testing.assert_allclose(mixed.sum(-1), 1.0, atol=1e-5)
    assert (mixed.max(-1) < 1.0 - 1e-6).any()  # some labels really are mixtures
    assert keras.ops.convert_to_numpy(out["images"]).shape == images.shape


def test_shift_policy_moves_images_but_never_mirrors_them():
    assert [name for name, _ in aug.transform_layers("shift")] == ["translate"]
    augmenter = aug.build_augmenter("shift", seed=0)
    image = np.zeros((1, 32, 32, 3), "float32")
    image[:, 10:22, 4:8] = 255.0  # a bar on the left: mirrored, it would sit on the right
    moved = np.stack([np.asarray(augmenter(image, training=True))[0] for _ in range(8)])
    left, right = moved[:, :, :16].sum(), moved[:, :, 16:].sum()
    assert left > 0 and right == 0


def test_unknown_augmentation_is_a_clear_error():
    with pytest.raises(ValueError, match="expected one of"):
        aug.get_augmentation("extreme")


def test_training_pipeline_batches_augments_and_mixes():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 16, 16, 3), dtype=np.uint8)
    y = np.arange(50) % 5
    config = aug.get_augmentation("strong")
    train = data.make_pipeline(
        x,
        y,
        16,
        num_classes=5,
        training=True,
        augmenter=aug.build_augmenter(config, 1),
        mixer=aug.build_mixer(config, 1),
    )
    batches = list(train)
    assert len(batches) == 3  # 50 // 16, the partial batch dropped
    images, labels = batches[0]
    assert images.dtype == "float32" and tuple(labels.shape) == (16, 5)
    evaluation = list(data.make_pipeline(x, y, 16, training=False))
    assert len(evaluation) == 4 and evaluation[-1][0].shape[0] == 2
    np.testing.assert_array_equal(np.concatenate([b[1] for b in evaluation]), y)
    np.testing.assert_array_equal(evaluation[0][0].numpy(), x[:16].astype("float32"))


def test_pydataset_without_tensorflow_matches_shapes():
    cls = data._array_batches_class()
    x = np.random.default_rng(0).integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    batches = cls(
        x,
        np.arange(40) % 4,
        16,
        num_classes=4,
        training=True,
        augmenter=aug.build_augmenter("light", 1),
        mixer=aug.build_mixer(aug.AugmentationConfig(mix="mixup"), 1),
    )
    assert len(batches) == 2
    images, labels = batches[0]
    assert images.shape == (16, 16, 16, 3) and labels.shape == (16, 4)


# --------------------------------------------------------------------------------------------
# Folder conventions (issue #41) and one-line data errors


def test_images_in_class_subfolders_belong_to_the_class(project):
    """Like `image_dataset_from_directory`, class folders are read recursively."""
    make_tree(project / "ds", per_class=(4, 4))
    nested = project / "ds" / "train" / "cat" / "more" / "deeper"
    nested.mkdir(parents=True)
    for i, image in enumerate(random_images(3, (12, 10), seed=5)):
        Image.fromarray(image).save(nested / f"extra{i}.png")
    (project / "ds" / "train" / "cat" / ".hidden").mkdir()
    Image.fromarray(random_images(1, (12, 10))[0]).save(
        project / "ds" / "train" / "cat" / ".hidden" / "x.png"
    )
    paths, labels, names = data.list_image_folder(project / "ds" / "train")
    assert names == ("cat", "dog") and np.bincount(labels).tolist() == [7, 4]
    assert sum("deeper" in str(p) for p in paths) == 3 and not any(
        ".hidden" in str(p) for p in paths
    )
    ds = data.load_dataset(project / "ds", validation_split=0.25)
    assert len(ds.y_train) + len(ds.y_val) == 11


def test_a_folder_with_images_only_in_subfolders_is_found(project):
    nested = project / "photos" / "cat" / "2024"
    nested.mkdir(parents=True)
    (project / "photos" / "dog" / "2024").mkdir(parents=True)
    for i, image in enumerate(random_images(4, (12, 10))):
        Image.fromarray(image).save(nested / f"{i}.png")
        Image.fromarray(image).save(project / "photos" / "dog" / "2024" / f"{i}.png")
    ds = data.load_dataset(project / "photos", validation_split=0.5)
    assert ds.class_names == ("cat", "dog") and len(ds.y_train) == 4


def write_mixed_sizes(root):
    """Three landscape (24x32) and two portrait (32x24) photos per class."""
    for name in ("cat", "dog"):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i, image in enumerate(random_images(3, (24, 32), seed=1)):
            Image.fromarray(image).save(folder / f"land{i}.png")
        for i, image in enumerate(random_images(2, (32, 24), seed=2)):
            Image.fromarray(image).save(folder / f"port{i}.png")


def test_images_of_mixed_sizes_are_resized(project, caplog):
    write_mixed_sizes(project / "ds")
    with caplog.at_level("WARNING", logger="mobilevit_utils.data"):
        ds = data.load_dataset(project / "ds", validation_split=0.2)
    assert ds.image_shape == (24, 32, 3)  # the most common size
    assert "24x32, the most common" in caplog.text and "--image-size" in caplog.text
    sized = data.load_dataset(project / "ds", validation_split=0.2, image_size=(16, 16))
    assert sized.image_shape == (16, 16, 3)
    cropped = data.load_dataset(
        project / "ds", validation_split=0.2, image_size=(16, 16), crop_to_aspect_ratio=True
    )
    assert cropped.image_shape == (16, 16, 3) and not np.array_equal(cropped.x_train, sized.x_train)
    padded = data.load_dataset(
        project / "ds", validation_split=0.2, image_size=(16, 16), pad_to_aspect_ratio=True
    )
    for image in padded.x_train:  # black bars above and below, or left and right
        assert (image[:2] == 0).all() or (image[:, :2] == 0).all()


def test_a_folder_with_test_but_no_train_is_not_taken_for_classes(project):
    make_tree(project / "ds", split="test")
    with pytest.raises(data.DataError, match="no train/ folder") as info:
        data.load_dataset(project / "ds")
    assert "--split test" in str(info.value) and "\n" not in str(info.value)
    from mobilevit_utils import evaluation

    metadata = {"class_names": ["cat", "dog", "emu"], "input_shape": [12, 10, 3]}
    with pytest.raises(data.DataError, match="no train/ folder"):
        evaluation.evaluation_data(metadata, project / "ds", split="val")
    x, y, _, source = evaluation.evaluation_data(metadata, project / "ds", split="test")
    assert len(y) == 18 and source.endswith("test")


def test_data_dir_that_is_a_file_says_so(project):
    (project / "notes.txt").write_text("not a dataset")
    with pytest.raises(data.DataError, match="is a file, not a folder"):
        data.load_dataset(project / "notes.txt")


def test_data_dir_may_name_the_archive_itself(project):
    import tarfile

    make_tree(project / "src" / "cifar", per_class=(3, 3))
    with tarfile.open(project / "images.tar", "w") as tar:
        tar.add(project / "src" / "cifar", arcname="cifar")
    ds = data.load_dataset(project / "images.tar", validation_split=0.5)
    assert ds.class_names == ("cat", "dog")


def test_a_class_with_one_image_is_named_in_the_split_error(project):
    make_tree(project / "ds", per_class=(6, 1, 6))
    with pytest.raises(data.DataError, match="Class 'dog' has only 1 image") as info:
        data.load_dataset(project / "ds")
    assert "--validation-split 0" in str(info.value)
    ds = data.load_dataset(project / "ds", validation_split=0)  # a final fit keeps it
    assert len(ds.y_train) == 13
