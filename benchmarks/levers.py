"""The levers towards 90 % (issue #18), each with its measured gain: one table built from the
committed results, never typed by hand.

Gains come from the equal-budget ablations (`benchmarks/results/ablations.csv`: the `cpu`
recipe for 12 epochs, split seed 42, one change per run) and are compared with the spread of
the baseline's seeds. The release line comes from the released checkpoint's results.json.

    python benchmarks/levers.py                     # print the table
    python benchmarks/levers.py --readme benchmarks/README.md  # also rewrite its levers block
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import ablations  # noqa: E402

# The current release (training.RELEASED_PRESET's folder) and its twin with a validation split
# (a final fit has no validation accuracy of its own), read without importing Keras.
RELEASE = ROOT / "checkpoints" / "mobilevit_v2_050_cifar10"
RELEASE_TWIN = ROOT / "checkpoints" / "mobilevit_v2_050_cifar10_heldout"
# A row measured before the ablation runner existed: the same recipe, split, seed and 12
# epochs with the bilinear shifts (its config, metadata and history are kept there).
EARLIER_RUNS = {
    "bilinear-shifts": ablations.RESULTS / "epoch_scaling" / "reference-cpu-12ep",
    "release": RELEASE_TWIN,  # the long-run levers are measured against the released recipe
}


@dataclasses.dataclass(frozen=True)
class Lever:
    lever: str
    run: str | None  # the ablation row that measures it; None: not an ablation
    against: str | None = None  # None: the row's own reference (ablations.reference_of)
    unmeasured: str = "not measured yet"  # the status while the row has no result


LEVERS = (
    Lever("pixel-exact shifts instead of bilinear sub-pixel shifts", "baseline", "bilinear-shifts"),
    Lever("weight EMA (validation and checkpoint on the EMA weights)", "ema"),
    Lever("1x1 patches at 4x4 (16 tokens instead of 4)", "patch1"),
    Lever("MobileViTv3-style blocks (cheaper fusion)", "v3-block"),
    Lever("MobileViTv2 width 0.5 (separable attention; 1.34x the MACs)", "v2-separable-attention"),
    Lever("dynamic depthwise convolution (4 kernels)", "dynamic-conv"),
    # Layouts at the baseline's training time (fewer epochs for slower layouts).
    Lever("MobileViTv2 width 0.5, equal training time", "v2-050-equal-time"),
    Lever("MobileViTv2 width 0.75, equal training time", "v2-075-equal-time"),
    Lever("rebalanced v1 layout, equal training time", "rebalanced-equal-time"),
    # The stacked small levers on the v2 layout, each seed against v2 alone with that seed.
    Lever(
        "the bundle on MobileViTv2 0.5 (label smoothing 0.2, warming weight average, "
        "alternating flip, batch 256, decay to zero)",
        "v2-bundle",
    ),
    Lever("the bundle, seed 43", "v2-bundle-seed43"),
    Lever("label smoothing 0.2 instead of 0.1", "label-smoothing-0.2"),
    Lever(
        "random erasing (p 0.5) in the second half of the released 64-epoch recipe",
        "release-erasing-late",
    ),
    # The bundle measured weight averaging with a warming decay, batch 256 and square-root
    # rate scaling on v2; these v1 EMA variants were left unrun.
    Lever("peak learning rate 2e-3 with EMA", "ema-lr2e-3", unmeasured="superseded by the bundle"),
    Lever(
        "batch 256, peak learning rate 3e-3, with EMA",
        "ema-batch256",
        unmeasured="superseded by the bundle",
    ),
    Lever("flip test-time augmentation (2 passes)", "flip-tta"),
    Lever("flip and shift test-time augmentation (10 passes)", "flip-shift-tta"),
    Lever(
        "a final fit on all 50,000 images",
        None,
        unmeasured="the release; scored by its twin, no held-out images of its own",
    ),
)


def accuracy(name, rows):
    """Validation accuracy of ablation `name` (from the CSV or an earlier kept run), or None."""
    if name in rows:
        return float(rows[name]["val_accuracy"])
    from mobilevit_utils.run_files import RunMetadata  # imports Keras: only when it is needed

    if name in EARLIER_RUNS and RunMetadata.exists(EARLIER_RUNS[name]):
        return RunMetadata.read(EARLIER_RUNS[name]).best_val_accuracy
    return None


def table(rows, release=RELEASE):
    spread = ablations.seed_spread(rows)
    lines = [
        "| lever | run | val accuracy | gain (points) | against the noise | status |",
        "|---|---|---|---|---|---|",
    ]
    for lever in LEVERS:
        against = lever.against or (lever.run and ablations.reference_of(lever.run, rows))
        ours = accuracy(lever.run, rows) if lever.run else None
        theirs = accuracy(against, rows) if against else None
        if ours is None or theirs is None:
            status = lever.unmeasured
            lines.append(f"| {lever.lever} | {lever.run or '-'} | - | - | - | {status} |")
            continue
        gain = 100 * (ours - theirs)
        verdict = "-" if spread is None else ("beyond" if abs(gain) > spread else "within")
        lines.append(
            f"| {lever.lever} | {lever.run} vs {against} | {100 * ours:.2f} % | "
            f"{gain:+.2f} | {verdict} | measured |"
        )
    notes = []
    if spread is not None:
        notes.append(
            f"Noise: the baseline's seeds span {spread:.2f} points; a gain within that "
            "span is not evidence."
        )
    notes.append(
        "Speed of each layout (images/s in training, TFLite latency): "
        "[variants_train_throughput.txt](results/variants_train_throughput.txt), "
        "[variants.md](results/variants.md)."
    )
    if (release / "results.json").exists():
        results = json.loads((release / "results.json").read_text())
        ev, training = results["evaluation"], results["training"]
        shifted = results.get("evaluation_flip_shift_tta", {}).get("accuracy")
        scorer = (
            " (its twin's, on the images the twin held out)"
            if results.get("scored_by_twin")
            else ""
        )
        notes.append(
            f"The release ({training['epochs']} epochs on {training['train_images']:,} images, "
            f"`{results['preset']}` recipe): {100 * ev['accuracy']:.2f} % on the {ev['split']} "
            f"split{scorer}, {100 * results['evaluation_flip_tta']['accuracy']:.2f} % with flip TTA"
            + (f", {100 * shifted:.2f} % with flip and shift TTA." if shifted else ".")
        )
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=ablations.RESULTS)
    parser.add_argument("--release", type=Path, default=RELEASE, help="a released checkpoint")
    parser.add_argument("--readme", type=Path, help="rewrite this README's levers block too")
    args = parser.parse_args(argv)
    text = table(ablations.read_rows(args.results_dir / "ablations.csv"), args.release)
    print(text)
    if args.readme:
        from benchmarks.readme_tables import replace_block

        replace_block(args.readme, "levers", text)


if __name__ == "__main__":
    main()
