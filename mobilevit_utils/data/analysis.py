"""Looking at a dataset: its class balance, and classic hand-made "features" to compare with
what the network learns."""

from __future__ import annotations

import numpy as np


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
