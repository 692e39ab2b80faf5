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


def save(fig, path):
    """Save a figure to an explicit path (report files) and close it; return the path."""
    fig.savefig(path)
    plt.close(fig)
    return path


def confusion_matrix_figure(cm, class_names, normalize=False, title=""):
    """Seaborn heatmap of a confusion matrix: counts, or rows normalised to recall."""
    import seaborn as sns

    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(5, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    sns.heatmap(
        values,
        annot=len(class_names) <= 20,
        fmt=".2f" if normalize else "d",
        cmap="Blues",
        xticklabels=class_names,
        yticklabels=class_names,
        ax=ax,
        cbar_kws={"label": "share of true class" if normalize else "images"},
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} confusion matrix{' (row-normalised)' if normalize else ''}".strip())
    fig.tight_layout()
    return fig


def reliability_figure(table, ece):
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    filled = table[table["count"] > 0]
    width = float(table["bin_high"].iloc[0] - table["bin_low"].iloc[0])
    ax.bar(
        filled["bin_low"],
        filled["accuracy"],
        width=width,
        align="edge",
        edgecolor="k",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE = {ece:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def mistakes_figure(images, true_names, predicted_names, confidences, ncols=8):
    """Gallery of misclassified images: true label, prediction and its confidence."""
    titles = [
        f"true: {t}\npred: {p} ({c:.2f})"
        for t, p, c in zip(true_names, predicted_names, confidences)
    ]
    return image_grid(
        images,
        titles,
        ncols=ncols,
        size=1.6,
        suptitle="most confident mistakes" if len(titles) else "no mistakes",
    )


def history_figure(history, title=""):
    """Loss and accuracy per epoch, training against validation, from a Keras history
    (`read_history` rows, a `History.history`-style list of dicts, or a DataFrame)."""
    import pandas as pd

    table = pd.DataFrame(history)
    table["epoch"] = table["epoch"].astype(int) + 1  # CSVLogger counts from 0
    table = table.set_index("epoch")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    marker = "o" if len(table) <= 30 else None
    table[[c for c in ("loss", "val_loss") if c in table]].plot(
        ax=axes[0], marker=marker, title="loss"
    )
    table[[c for c in ("accuracy", "val_accuracy") if c in table]].plot(
        ax=axes[1], marker=marker, title="accuracy"
    )
    for ax in axes:
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def ablation_figure(table, baseline="baseline"):
    """Validation accuracy of each ablation run against its fit time and its MACs per image
    (`table`: benchmarks/results/ablations.csv as a DataFrame), the baseline marked."""
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    table = table.assign(
        accuracy=100 * table["val_accuracy"],
        minutes=table["train_time_s"] / 60,
        mmacs=table["macs"] / 1e6,
    )
    for ax, (column, label) in zip(
        axes, [("minutes", "fit time (min, 2 CPU cores)"), ("mmacs", "MACs per image (M)")]
    ):
        sns.scatterplot(data=table, x=column, y="accuracy", ax=ax, s=60)
        for _, row in table.iterrows():
            ax.annotate(
                row["name"],
                (row[column], row["accuracy"]),
                fontsize=8,
                xytext=(4, 3),
                textcoords="offset points",
            )
        if baseline in set(table["name"]):
            ax.axhline(table.loc[table["name"] == baseline, "accuracy"].iloc[0], ls="--", c="grey")
        ax.set(xlabel=label, ylabel="validation accuracy (%)")
    fig.suptitle("Ablations at equal budget (dashed: the baseline)")
    fig.tight_layout()
    return fig


def unfold_figure(height=8, width=8, patch_size=2):
    """What `layers.unfold` does, drawn from its output: a numbered map coloured by each
    pixel's position inside its patch, and the sequences unfold makes of it."""
    from keras import ops

    from mobilevit_utils.layers import unfold

    p = patch_size
    grid = np.arange(height * width, dtype="float32").reshape(1, height, width, 1)
    sequences = ops.convert_to_numpy(unfold(grid, p))[:, :, 0].astype(int)
    position = np.add.outer(np.arange(height) % p * p, np.arange(width) % p)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    axes[0].imshow(position, cmap="Pastel1", vmin=0, vmax=8)
    for (r, c), v in np.ndenumerate(grid[0, :, :, 0].astype(int)):
        axes[0].text(c, r, v, ha="center", va="center", fontsize=8)
    for k in range(1, width // p):
        axes[0].axvline(p * k - 0.5, color="k", lw=1.5)
    for k in range(1, height // p):
        axes[0].axhline(p * k - 0.5, color="k", lw=1.5)
    axes[0].set_title(f"{height}x{width} map, {p}x{p} patches; colour = position in patch")
    rows = np.repeat(np.arange(p * p)[:, None], sequences.shape[1], 1)
    axes[1].imshow(rows, cmap="Pastel1", vmin=0, vmax=8, aspect="auto")
    for (r, c), v in np.ndenumerate(sequences):
        axes[1].text(c, r, v, ha="center", va="center", fontsize=7)
    axes[1].set_title(f"after unfold: {p * p} sequences of {sequences.shape[1]} tokens")
    axes[1].set_xlabel("token (one per patch)")
    axes[1].set_ylabel("sequence")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def results_figure(points, noise_band=None, anchors=(), title=""):
    """Accuracy against MACs per image: `points` are dicts with `label`, `macs` (M), `accuracy`
    (%), optional `low`/`high` (the spread of its seeds) and `kind` (one marker per kind, so
    that the legend, not crowded annotations, names each point); `noise_band` a (low, high)
    shaded across the plot; `anchors` (label, accuracy) horizontal reference lines."""
    fig, ax = plt.subplots(figsize=(8.5, 5))
    if noise_band is not None:
        ax.axhspan(*noise_band, color="grey", alpha=0.2, label="12-epoch baseline's seed spread")
    markers = {}
    for point in points:
        marker = markers.setdefault(point.get("kind", ""), "osD^vP*X"[len(markers) % 8])
        err = None
        if "low" in point:
            err = [[point["accuracy"] - point["low"]], [point["high"] - point["accuracy"]]]
        ax.errorbar(
            point["macs"],
            point["accuracy"],
            yerr=err,
            fmt=marker,
            ms=8 if marker != "*" else 14,
            capsize=3,
            label=point["label"],
        )
    for label, accuracy in anchors:
        ax.axhline(accuracy, ls="--", c="black", lw=1)
        ax.annotate(
            label,
            (ax.get_xlim()[0], accuracy),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set(
        xlabel="multiply-accumulates per image (M)", ylabel="validation accuracy (%)", title=title
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
