"""Small synthetic data shared by tests and their subprocess scripts."""

from pathlib import Path

import numpy as np

from mobilevit_utils import data


def learnable_images(n_per_class=12, classes=3, size=32, seed=0):
    """(images, labels): each class has its own mean brightness, so a model can learn it."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = np.clip(
        rng.normal(60 + 60 * y[:, None, None, None], 30, size=(len(y), size, size, 3)), 0, 255
    )
    return x.astype("uint8"), y


def tiny_dataset(n_per_class=12, classes=3, size=32, seed=0):
    """`learnable_images` split 75/25 into an `ImageDataset` with classes class0, class1, ..."""
    x, y = learnable_images(n_per_class, classes, size, seed)
    x_train, y_train, x_val, y_val = data.stratified_split(x, y, 0.25, seed)
    names = tuple(f"class{c}" for c in range(classes))
    return data.ImageDataset(x_train, y_train, x_val, y_val, names, "synthetic")


def write_image_tree(root, images, labels, class_names):
    """Save images as root/<class name>/NNNN.png, the layout `data.load_dataset` reads."""
    root = Path(root)
    data.save_image_folder(root.parent, images, labels, class_names, split=root.name)
    return root


def random_images(count, size=(32, 32), seed=0):
    """Uniform-noise RGB images (count, height, width, 3) as uint8."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *size, 3), dtype=np.uint8)
