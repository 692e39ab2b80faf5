"""The front page's figure: validation accuracy against MACs per image for the released models,
the layouts of the ablations (12 epochs, or equal training time) and the published anchor,
with the baseline's seed spread shaded. Reads only committed files (the ablations CSV and each
release's results.json), so rerunning it after a new row or release redraws it.

    python benchmarks/results_figure.py        # writes benchmarks/results/accuracy_vs_macs.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import ablations  # noqa: E402

# Layout rows of the ablations, grouped by what they compare (seeds of one run are one point).
LAYOUTS = {
    "xxs_cifar (v1), 12 epochs": ("baseline", "baseline-seed43", "baseline-seed44"),
    "v2_050_cifar (v2, width 0.5), 12 epochs": (
        "v2-separable-attention",
        "v2-separable-attention-seed43",
        "v2-separable-attention-seed44",
    ),
    "xxs_cifar_p1 (1x1 patches), 12 epochs": ("patch1",),
    "xxs_cifar_v3 (v3-style blocks), 12 epochs": ("v3-block",),
    "xxs_cifar_dynconv, 12 epochs": ("dynamic-conv",),
}
EQUAL_TIME = ("v2-050-equal-time", "v2-075-equal-time", "rebalanced-equal-time")
# The published result for this layout at 32x32 (official test split, 200 GPU epochs, SGD,
# crop and flip): pprp/PyTorch-CIFAR-Model-Hub.
ANCHORS = (("published MobileViT-XXS, 200 GPU epochs: 90.17 % (test split)", 90.17),)


def releases(root=ROOT):
    """(preset name, results.json) of every released checkpoint in the repository; a final
    fit's twin is left out, since the final fit reports the twin's scores."""
    from mobilevit_utils import presets

    twins = {  # once their final fit is released
        preset.twin
        for preset in presets.PRESETS.values()
        if preset.twin and (root / preset.checkpoint / "results.json").exists()
    }
    found = []
    for name, preset in presets.PRESETS.items():
        if name in twins:
            continue
        path = root / preset.checkpoint / "results.json" if preset.checkpoint else None
        if path is not None and path.exists():
            found.append((name, json.loads(path.read_text())))
    return found


def points(rows, released):
    out = []
    for label, names in LAYOUTS.items():
        values = [100 * float(rows[n]["val_accuracy"]) for n in names if n in rows]
        if not values:
            continue
        point = {"label": label, "kind": "12 epochs", "accuracy": sum(values) / len(values)}
        point["macs"] = float(rows[names[0]]["macs"]) / 1e6
        if len(values) > 1:
            point.update(low=min(values), high=max(values), label=f"{label} ({len(values)} seeds)")
        out.append(point)
    for name in EQUAL_TIME:
        if name in rows:
            row = rows[name]
            out.append(
                {
                    "label": f"{name} ({row['epochs']} epochs)",
                    "kind": "equal time",
                    "macs": float(row["macs"]) / 1e6,
                    "accuracy": 100 * float(row["val_accuracy"]),
                }
            )
    for name, results in released:
        ev, training = results["evaluation"], results["training"]
        out.append(
            {
                "label": f"release {name}: {training['epochs']} epochs, "
                f"{training['wall_time_s'] / 3600:.1f} h ({ev['split']} split"
                f"{' of its twin' if results.get('scored_by_twin') else ''})",
                "kind": "release",
                "macs": results["macs_per_image"] / 1e6,
                "accuracy": 100 * ev["accuracy"],
            }
        )
    return out


def main(argv=None):
    from mobilevit_utils import plots

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=ablations.RESULTS)
    parser.add_argument("--out", type=Path, default=ablations.RESULTS / "accuracy_vs_macs.png")
    args = parser.parse_args(argv)
    rows = ablations.read_rows(args.results_dir / "ablations.csv")
    seeds = [100 * float(rows[n]["val_accuracy"]) for n in LAYOUTS["xxs_cifar (v1), 12 epochs"]]
    plots.set_style()
    fig = plots.results_figure(
        points(rows, releases()),
        noise_band=(min(seeds), max(seeds)),
        anchors=ANCHORS,
        title="CIFAR-10 on 2 CPU cores: accuracy against cost per image",
    )
    plots.save(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
