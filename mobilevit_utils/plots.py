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
    """Save `fig` as `<artifacts>/<folder>/<name>.png` and show it (in notebooks). Returns
    nothing, so that a notebook cell ending with it shows the figure and no machine path."""
    fig.savefig(artifacts_dir(folder) / f"{name}.png")
    if show and "inline" in matplotlib.get_backend():
        plt.show()
    else:
        plt.close(fig)


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
    """Reliability diagram: accuracy per confidence bin against the diagonal, and below it the
    share of the images in each bin (a bar far off the diagonal matters only if it holds many)."""
    fig, (ax, below) = plt.subplots(
        2, 1, figsize=(4.5, 5.4), sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    filled = table[table["count"] > 0]
    width = float(table["bin_high"].iloc[0] - table["bin_low"].iloc[0])
    bars = dict(width=width, align="edge", edgecolor="k", alpha=0.7)
    ax.bar(filled["bin_low"], filled["accuracy"], label="accuracy", **bars)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE = {ece:.3f})")
    ax.legend(loc="upper left")
    share = 100 * filled["count"] / table["count"].sum()
    below.bar(filled["bin_low"], share, color="0.6", **bars)
    below.set_ylabel("images (%)")
    below.set_xlabel("confidence (max probability)")
    fig.tight_layout()
    return fig


def mistakes_figure(
    images, true_names, predicted_names, confidences, ncols=4, suptitle=None, size=1.6
):
    """Gallery of predictions (by default the most confident mistakes), each image under two
    short lines: the prediction with its confidence, then the true class. A wrong prediction
    is marked red: its line, and a frame around the image. Four columns by default, so that
    the lines read at a page's width (about 600 pixels)."""
    images = list(images)
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    gap, head = 0.45, 0.35  # inches: the two lines above each image; the figure's title
    height = nrows * size + nrows * gap + head
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, height), squeeze=False)
    fig.subplots_adjust(
        left=0.005,
        right=0.995,
        bottom=0.05 / height,
        top=1 - (gap + head) / height,
        wspace=0.1,
        hspace=gap / size,
    )
    red = "#c0392b"
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(images):
            ax.axis("off")
            continue
        wrong = str(true_names[i]) != str(predicted_names[i])
        ax.imshow(np.asarray(images[i]).squeeze())
        for spine in ax.spines.values():
            spine.set(visible=wrong, color=red, linewidth=3)
        lines = [
            (f"pred: {predicted_names[i]} {confidences[i]:.0%}", red if wrong else "black", 15),
            (f"true: {true_names[i]}", "black", 3),
        ]
        for text, color, offset in lines:
            ax.annotate(
                text,
                (0.5, 1),
                xycoords="axes fraction",
                xytext=(0, offset),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
                color=color,
                fontweight="bold" if color == red else "normal",
            )
    if suptitle is None:
        suptitle = "most confident mistakes" if images else "no mistakes"
    fig.suptitle(suptitle, y=1 - 0.05 / height, va="top")
    return fig


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


def _spread(desired, gap, lo, hi):
    """Positions at least `gap` apart within [lo, hi], each as near its desired (sorted) value
    as the others allow: overlapping runs merge and centre on their mean."""
    groups = []  # [first index, count, centre]
    for i, d in enumerate(desired):
        groups.append([i, 1, d])
        while True:
            _, n, centre = groups[-1]
            groups[-1][2] = min(max(centre, lo + (n - 1) * gap / 2), hi - (n - 1) * gap / 2)
            if len(groups) == 1:
                break
            (i0, n0, c0), (_, n1, c1) = groups[-2], groups[-1]
            if c0 + (n0 + n1) * gap / 2 <= c1 + 1e-9:
                break
            groups[-2:] = [[i0, n0 + n1, float(np.mean(desired[i0 : i0 + n0 + n1]))]]
    return [c + (k - (n - 1) / 2) * gap for _, n, c in groups for k in range(n)]


# One colour per ablation verdict (`tuning.ablation_verdicts`).
_VERDICT_COLOURS = dict(
    zip(
        ("reference", "seed", "helped", "within noise", "hurt"),
        ("tab:blue", "tab:cyan", "tab:green", "tab:grey", "tab:red"),
    )
)
# The two panels: (column, x label, log scale).
_ABLATION_PANELS = (
    ("compute", "training compute: epochs x MACs per image, relative to the baseline", False),
    ("inference", "multiply-accumulates per prediction (M): per image x forward passes", True),
)


def _ablation_rows(table, baseline):
    """(rows sorted by accuracy, with the costs plotted, and the baseline's row)."""
    table = table.assign(
        accuracy=100 * table["val_accuracy"],
        views=table["views"] if "views" in table else 1,
        verdict=table["verdict"] if "verdict" in table else "run",
    )
    base = table.loc[table["name"] == baseline].iloc[0]
    table = table.assign(
        compute=table["epochs"] * table["macs"] / (base["epochs"] * base["macs"]),
        inference=table["views"] * table["macs"] / 1e6,
    ).sort_values("accuracy")
    return table, base


def _round_log_ticks(ax):
    """Round ticks (20, 30, 50, 100, ...) instead of overprinting 3x10^1, 4x10^1."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ticks = [m * 10**e for e in decades for m in (1, 2, 3, 5) if lo <= m * 10**e <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _ablation_panel(ax, table, base, panel, ylim, gap, noise_band, fontsize):
    """One panel: accuracy against one cost, each point labelled in a column beside it."""
    column, label, log = panel
    if noise_band is not None:
        ax.axhspan(*noise_band, color="grey", alpha=0.15, lw=0)
    ax.axhline(base["accuracy"], ls="--", c="grey", lw=1)
    for verdict, rows in table.groupby("verdict", sort=False):
        colour = _VERDICT_COLOURS.get(verdict, "tab:blue")
        ax.scatter(rows[column], rows["accuracy"], s=36, c=colour, zorder=3)
    if log:
        _round_log_ticks(ax)
    ax.set(xlabel=label, ylabel="validation accuracy (%)", ylim=ylim)
    heights = _spread(list(table["accuracy"]), gap, *ylim)
    for (_, row), y in zip(table.iterrows(), heights):
        epochs = f" ({row['epochs']} epochs)" if row["epochs"] != base["epochs"] else ""
        ax.annotate(
            row["name"] + epochs,
            xy=(row[column], row["accuracy"]),
            xytext=(1.03, y),
            textcoords=("axes fraction", "data"),
            fontsize=fontsize,
            va="center",
            annotation_clip=False,
            arrowprops=dict(arrowstyle="-", color="0.75", lw=0.6, shrinkA=0, shrinkB=3),
        )


def _ablation_legend(fig, verdicts, baseline, noise_band, fontsize, fig_height):
    from matplotlib.patches import Patch

    handles = [
        plt.Line2D([], [], ls="", marker="o", c=_VERDICT_COLOURS[v], label=v)
        for v in _VERDICT_COLOURS
        if v in verdicts
    ]
    handles.append(plt.Line2D([], [], ls="--", c="grey", label=baseline))
    if noise_band is not None:
        handles.append(Patch(color="grey", alpha=0.15, label="its seeds' spread (the noise)"))
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.35 / fig_height),
        ncol=len(handles),
        fontsize=fontsize + 1,
        frameon=False,
    )


def ablation_figure(table, baseline="baseline", noise_band=None):
    """Validation accuracy of each ablation run against two costs that the machine's load
    cannot move: training compute (epochs x MACs per image, relative to the baseline's) and
    MACs per prediction (MACs per image x forward passes, on a log axis). Fit time is left out:
    runs of one recipe took very different times when other work shared the cores.

    `table`: benchmarks/results/ablations.csv as a DataFrame, optionally with `views` (forward
    passes per prediction, default 1) and `verdict` (one colour each, see
    `tuning.ablation_verdicts`). Each label sits in a column beside its panel, as near its
    point's height as the labels above and below allow, joined to it by a line, so rows of the
    same cost stay readable. `noise_band`: (low, high) accuracy in %, shaded (the baseline's
    seeds)."""
    table, base = _ablation_rows(table, baseline)
    fontsize = 8
    line = fontsize * 1.3 / 72  # inches between two labels
    axes_height = max(3.2, line * (len(table) + 1))
    fig_height = len(_ABLATION_PANELS) * (axes_height + 0.9) + 0.8
    fig, axes = plt.subplots(len(_ABLATION_PANELS), 1, figsize=(10, fig_height))
    fig.subplots_adjust(
        left=0.08,
        right=0.64,
        top=1 - 0.8 / fig_height,
        bottom=0.6 / fig_height,
        hspace=0.9 / axes_height,
    )
    low, high = table["accuracy"].min(), table["accuracy"].max()
    pad = 0.04 * (high - low)
    ylim = (low - pad, high + pad)
    gap = (ylim[1] - ylim[0]) * line / axes_height
    for ax, panel in zip(axes, _ABLATION_PANELS):
        _ablation_panel(ax, table, base, panel, ylim, gap, noise_band, fontsize)
    _ablation_legend(fig, set(table["verdict"]), baseline, noise_band, fontsize, fig_height)
    fig.suptitle(
        "Ablations: accuracy against costs that machine load cannot move",
        y=1 - 0.05 / fig_height,
        va="top",
    )
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
    (%) and optional `low`/`high` (the spread of its seeds); each point has its own marker and
    colour, so that the legend, not crowded annotations, names it; `noise_band` a (low, high)
    shaded across the plot; `anchors` (label, accuracy) horizontal reference lines. The legend
    sits under the plot, one entry a line, so the plot keeps the page's whole width (a phone
    shows the figure at about 360 pixels) and the figure's height grows with its entries."""
    entries = len(points) + (noise_band is not None)
    fig, ax = plt.subplots(figsize=(6.4, 4.2 + 0.24 * entries))
    if noise_band is not None:
        ax.axhspan(*noise_band, color="grey", alpha=0.2, label="12-epoch baseline's seed spread")
    for i, point in enumerate(points):
        marker = "osD^vP*XpH<>"[i % 12]  # a shape per point: the legend reads without colour
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
            fontsize=10,
        )
    ax.set(xlabel="multiply-accumulates per image (M)", ylabel="validation accuracy (%)")
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(0, -0.16), ncols=1, frameon=False)
    fig.tight_layout()
    return fig


def _si(number):
    """1234567 -> '1.23 M'."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= size:
            return f"{number / size:.3g} {unit}"
    return f"{number:.0f}"


def _box_width(shape):
    """Grows with the log of the map's side (a vector: 1); wide enough for the shape's text."""
    return 1.9 + 0.28 * np.log2(shape[0] if len(shape) == 3 else 1)


def _describe_stage(key, members):
    """(role, text) of one stage's layers, in lines of at most ~34 characters. The role
    (`BlockKind.role` of its layers' kind, or "head") picks the colour; an attention stage is
    named by its kind's `label`."""
    from mobilevit_utils import block_kinds

    if key == "head":
        return "head", "average pool, dropout, dense"
    first = members[0]
    kinds = [block_kinds.block_kind_of(layer) for layer in members]
    for block, kind in zip(members, kinds):
        if kind is not None and kind.role == "attention":
            text = f"inverted residual, stride {first.strides}\n+ {kind.label or kind.name}"
            if hasattr(block, "num_transformer_layers"):  # a MobileViTBlockBase
                text += (
                    f": {block.num_transformer_layers} layers,\n"
                    f"d={block.embedding_dim}, {block.patch_size}x{block.patch_size} patches"
                )
            return "attention", text
    if kinds[0] is not None and kinds[0].role == "conv":
        size = f"{first.kernel_size}x{first.kernel_size} conv"
        return "conv", f"{size}, stride {first.strides}" if key == "stem" else size
    plural = "s" if len(members) > 1 else ""
    then = ", then 1" if plural and first.strides > 1 else ""
    return "mv2", f"{len(members)} inverted residual{plural},\nstride {first.strides}{then}"


def _architecture_stages(model):
    """[(name, role, text, output shape, (params, MACs) or None)], the input first."""
    from mobilevit_utils import models

    groups = {}  # stage -> its layers' table rows, in model order
    for row in models.layer_table(model):
        name = row["layer"]
        key = name.split("_")[0] if name.startswith(("stem", "stage")) else name
        key = "head" if key in ("avg_pool", "dropout", "classifier") else key
        if key != "rescaling":
            groups.setdefault(key, []).append(row)
    stages = [("input", "input", "image", tuple(model.input_shape[1:]), None)]
    for key, rows in groups.items():
        role, text = _describe_stage(key, [model.get_layer(row["layer"]) for row in rows])
        params, macs = sum(row["params"] for row in rows), sum(row["macs"] for row in rows)
        label = "final conv" if key == "final_conv" else key
        stages.append((label, role, text, rows[-1]["output_shape"], (params, macs)))
    return stages


_ROLE_COLOURS = {"input": "0.85", "conv": "C0", "mv2": "C1", "attention": "C2", "head": "C3"}


# Columns of the architecture figure, in data units (one unit is 0.58 inch at 7.2 inches wide).
_NAME_X, _BOX_X, _TEXT_X, _COST_X, _ROW = 0.0, 3.2, 5.2, 12.4, 1.25


def _draw_stage(ax, i, stage):
    """Row `i`: the stage's name, a box as wide as its map (its output shape inside), what it
    is, its parameters and MACs, and an arrow from the row above."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    name, role, text, shape, cost = stage
    y, width = -i * _ROW, _box_width(shape)
    ax.add_patch(
        FancyBboxPatch(
            (_BOX_X - width / 2, y - 0.4),
            width,
            0.8,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=_ROLE_COLOURS[role],
            alpha=0.35,
            edgecolor="0.3",
        )
    )
    ax.text(_NAME_X, y, name, ha="left", va="center", weight="bold")
    ax.text(_BOX_X, y, str(shape), ha="center", va="center")
    ax.text(_TEXT_X, y, text, ha="left", va="center", linespacing=1.15)
    if cost:
        costs = f"{_si(cost[0])} params\n{_si(cost[1])} MACs"
        ax.text(_COST_X, y, costs, ha="right", va="center", linespacing=1.15)
    if i:
        arrow = FancyArrowPatch(
            (_BOX_X, y + _ROW - 0.42), (_BOX_X, y + 0.42), arrowstyle="-|>", mutation_scale=14
        )
        arrow.set_color("0.3")
        ax.add_patch(arrow)


def architecture_figure(model, num_classes=10, title=None):
    """A MobileViT drawn stage by stage, top to bottom: stem -> inverted residuals -> MobileViT
    blocks -> head. Each row names the stage; its box grows with the feature map's side (log
    scale) and holds the tensor shape it outputs; then what the stage is, its parameters and
    its MACs per image. Drawn narrow and tall, with 10.5-point text, to be read at a page's or
    a phone's width.

    `model`: a model made by `models.build_mobilevit` (its input size known), or a variant (a
    name or `MobileViTConfig`), built here with `num_classes` outputs at its default input.
    """
    import keras

    from mobilevit_utils import models

    if not isinstance(model, keras.Model):
        model = models.build_mobilevit(model, num_classes=num_classes)
    stages = _architecture_stages(model)
    with plt.rc_context({"font.size": 10.5}):
        fig, ax = plt.subplots(figsize=(7.2, 0.75 * len(stages) + 0.6))
        for i, stage in enumerate(stages):
            _draw_stage(ax, i, stage)
        ax.set_xlim(-0.1, _COST_X + 0.1)
        ax.set_ylim(-(len(stages) - 1) * _ROW - 0.6, 0.6)
        ax.axis("off")
        ax.set_title(title or f"{model.name}: box width grows with the map's side (log scale)")
        fig.tight_layout()
    return fig
