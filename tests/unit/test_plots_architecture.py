import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from mobilevit_utils import models, plots  # noqa: E402


def figure_text(fig):
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def test_architecture_figure_draws_every_stage_with_its_shape():
    model = models.build_mobilevit("xxs_cifar", num_classes=10)
    fig = plots.architecture_figure(model)
    text = figure_text(fig)
    names = ["input", "stem", "stage1", "stage2", "stage3", "stage4", "stage5", "final conv"]
    assert [t for t in text if t in names + ["head"]] == names + ["head"]
    table = models.layer_table(model)
    last = {row["layer"].split("_")[0]: row["output_shape"] for row in table}
    for stage in ("stem", "stage1", "stage2", "stage3", "stage4", "stage5"):
        assert any(t.startswith(str(last[stage])) for t in text), stage
    assert any(t.startswith("(10,)") for t in text)
    assert sum("MobileViT block" in t for t in text) == 3
    plt.close(fig)


def test_architecture_figure_builds_a_variant_name():
    fig = plots.architecture_figure("v2_050_cifar", num_classes=10)
    text = figure_text(fig)
    assert sum("MobileViTv2 block" in t for t in text) == 3
    assert "final conv" not in text  # v2 has no final 1x1 conv
    assert any(t.startswith("(4, 4, 256)") for t in text)
    plt.close(fig)


def test_architecture_figure_reads_at_a_page_width():
    """At the site's 584-pixel content width every label is at least 11 pixels tall (the wide
    left-to-right drawing it replaced shrank its labels to about 4 pixels)."""
    fig = plots.architecture_figure("xxs_cifar", num_classes=10)
    width_inches = fig.get_size_inches()[0]
    smallest = min(text.get_fontsize() for ax in fig.axes for text in ax.texts)
    assert smallest / 72 * 584 / width_inches >= 11
    plt.close(fig)


def test_results_figure_keeps_the_page_width_for_its_plot():
    """The front page's chart: the legend sits under the plot, so the plot spans the figure's
    width (beside a ten-entry legend it had 45 %), and its text reads at the page's width."""
    points = [
        {"label": f"layout {i}, 12 epochs", "kind": "12 epochs", "macs": 20 + i, "accuracy": 80 + i}
        for i in range(9)
    ]
    fig = plots.results_figure(points, noise_band=(81, 82), anchors=(("anchor", 90),), title="t")
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 <= ax.get_window_extent().y0  # under the axes, not beside them
    assert ax.get_position().width >= 0.8
    smallest = min(t.get_fontsize() for t in [*ax.get_legend().get_texts(), *ax.texts])
    assert smallest / 72 * 584 / fig.get_size_inches()[0] >= 11
    plt.close(fig)


def test_mistakes_gallery_reads_at_a_page_width():
    """Each image's two lines are at least 11 pixels tall at the site's 584-pixel width (eight
    columns shrank them to about 5) and stay within the image's column."""
    import numpy as np

    images = np.zeros((16, 32, 32, 3), "uint8")
    names = ["automobile"] * 16
    fig = plots.mistakes_figure(images, names, ["airplane"] * 16, np.full(16, 0.99))
    fig.canvas.draw()
    texts = [t for ax in fig.axes for t in ax.texts]
    smallest = min(t.get_fontsize() for t in texts)
    assert smallest / 72 * 584 / fig.get_size_inches()[0] >= 11
    column = fig.get_size_inches()[0] * fig.dpi / 4
    assert max(t.get_window_extent().width for t in texts) <= column
    plt.close(fig)
