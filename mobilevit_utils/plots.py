"""One place for figures: a shared style and `finish`, which saves every figure to the artifacts
folder (so reports and the README can link it) and shows it inline in notebooks."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from mobilevit_utils.environment import artifacts_dir


def set_style():
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight"})


def finish(fig, name, folder="figures", show=True):
    """Save `fig` as `<artifacts>/<folder>/<name>.png`, show it (in notebooks), return the path."""
    path = artifacts_dir(folder) / f"{name}.png"
    fig.savefig(path)
    if show and "inline" in matplotlib.get_backend():
        plt.show()
    else:
        plt.close(fig)
    return path


def image_grid(images, titles=None, ncols=8, size=1.4, cmap=None, suptitle=None):
    """A grid of images (uint8 or floats in [0, 1]) with optional titles; returns the figure."""
    images = list(images)
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i >= len(images):
            continue
        image = np.asarray(images[i])
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 1)
        ax.imshow(image.squeeze(), cmap=cmap if image.ndim == 2 or image.shape[-1] == 1 else None)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
