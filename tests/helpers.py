"""Small synthetic data shared by tests and their subprocess scripts."""

import numpy as np

from mobilevit_utils import data


def tiny_dataset(n_per_class=12, classes=3, size=32, seed=0):
    """A learnable dataset: each class has its own mean brightness."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = np.clip(rng.normal(60 + 60 * y[:, None, None, None], 30, size=(len(y), size, size, 3)), 0, 255)
    x_train, y_train, x_val, y_val = data.stratified_split(x.astype("uint8"), y, 0.25, seed)
    names = tuple(f"class{c}" for c in range(classes))
    return data.ImageDataset(x_train, y_train, x_val, y_val, names, "synthetic")
