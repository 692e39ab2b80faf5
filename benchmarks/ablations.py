"""Ablations at equal budget: one recipe, one split, one number of epochs, one change per run.

Every run trains the `cpu` recipe for `--epochs` (default 12) on the same 45,000/5,000 split
(split seed 42, whatever the run's own seed), evaluates its best checkpoint on the 5,000
held-out images, and writes one row of `benchmarks/results/ablations.csv`:

    name, change, seed, epochs, val_accuracy, macro_f1, train_time_s, images_per_s, params, macs

with the run's config, history and metadata under `benchmarks/results/ablations/<name>/`.
Runs train in `artifacts/ablations/<name>/`: rerunning the command skips finished rows and
resumes an interrupted run from its last finished epoch. Test-time-augmentation rows reuse the
baseline's checkpoint (no training; their time is the baseline's).

    python benchmarks/ablations.py --data-dir ../shared/data               # every missing row
    python benchmarks/ablations.py --only baseline ema --data-dir ...      # some of them
    python benchmarks/ablations.py --list

train_time_s is the wall time of `fit` (validation included) as it ran; runs that shared the
two cores with other work are slower than the throughput benchmark says, so compare
accuracy, and take speed from `benchmarks/train_throughput.py`.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = (
    "name",
    "change",
    "compared_with",
    "seed",
    "epochs",
    "val_accuracy",
    "macro_f1",
    "train_time_s",
    "images_per_s",
    "params",
    "macs",
)
SPLIT_SEED = 42

# The baseline recipe, spelled out so that later changes to the `cpu` preset do not move it.
BASELINE = {
    "model": "xxs_cifar",
    "augmentation": "light",
    "label_smoothing": 0.1,
    "ema": False,
    "weight_averaging": False,
    "batch_size": 128,
    "learning_rate": 1.5e-3,
    "min_learning_rate": 2e-5,
    "warmup_epochs": 2.0,
}
# The small levers of fast-CIFAR training (airbench, hlb-CIFAR10, D. Page's ResNet series),
# measured together on the v2 layout, against its two 12-epoch seeds above. Batch 256 trains
# faster per image here; AdamW's peak rate grows with the square root of the batch.
BUNDLE = {
    "model": "v2_050_cifar",
    "label_smoothing": 0.2,
    "weight_averaging": True,
    "augmentation": "light_alternating",
    "batch_size": 256,
    "learning_rate": 1.5e-3 * 2**0.5,
    "min_learning_rate": 0.0,
}
# SGD with Nesterov momentum (TrainConfig's "sgd") on v2, the rest of the recipe unchanged.
SGD = {"model": "v2_050_cifar", "optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 5e-3}

# name: (what changes against the baseline, recipe overrides, test-time augmentation),
# in the order they run: the levers most likely to matter first.
RUNS = {
    "baseline": ("cpu recipe, whole-pixel shifts", {}, None),
    "flip-tta": ("the baseline's checkpoint, flip test-time augmentation", None, "flip"),
    "ema": ("weight EMA (momentum 0.999)", {"ema": True}, None),
    "patch1": ("1x1 patches in the 4x4 MobileViT blocks", {"model": "xxs_cifar_p1"}, None),
    "baseline-seed43": ("the baseline, seed 43", {"seed": 43}, None),
    "label-smoothing-0.2": ("label smoothing 0.2", {"label_smoothing": 0.2}, None),
    "flip-shift-tta": (
        "the baseline's checkpoint, flip and one-pixel-shift test-time augmentation (10 views)",
        None,
        "flip+shift",
    ),
    "v3-block": (
        "MobileViTv3-style blocks (depthwise local conv, 1x1 fusion of local and global, input added)",
        {"model": "xxs_cifar_v3"},
        None,
    ),
    "dynamic-conv": (
        "dynamic depthwise convolution (4 kernels) in every inverted residual",
        {"model": "xxs_cifar_dynconv"},
        None,
    ),
    "v2-separable-attention": (
        "MobileViTv2 width 0.5 (separable attention) with the same strides",
        {"model": "v2_050_cifar"},
        None,
    ),
    "v2-separable-attention-seed43": (
        "MobileViTv2 width 0.5, seed 43 (its own noise)",
        {"model": "v2_050_cifar", "seed": 43},
        None,
    ),
    "rebalanced": (
        "32 instead of 24 channels at 16x16, 2 instead of 4 and 3 transformer layers at 4x4",
        {"model": "xxs_cifar_rebalanced"},
        None,
    ),
    # EMA lagged the 12-epoch run; a higher peak learning rate (clipping keeps 2e-3 stable) or
    # larger batches (fewer steps, each averaged over more images) move the weights faster.
    "ema-lr2e-3": (
        "weight EMA with peak learning rate 2e-3",
        {"ema": True, "learning_rate": 2e-3},
        None,
    ),
    "ema-batch256": (
        "weight EMA, batch 256, peak learning rate 3e-3",
        {"ema": True, "batch_size": 256, "learning_rate": 3e-3},
        None,
    ),
    # Layouts at equal training time: each trains for as many epochs as the baseline's 12 take
    # at its measured speed (`equal_time_epochs`), so a slower layout gets fewer epochs.
    "v2-050-equal-time": (
        "MobileViTv2 width 0.5 at the baseline's training time",
        {"model": "v2_050_cifar", "epochs": "equal-time"},
        None,
    ),
    "v2-075-equal-time": (
        "MobileViTv2 width 0.75 at the baseline's training time",
        {"model": "v2_075_cifar", "epochs": "equal-time"},
        None,
    ),
    "rebalanced-equal-time": (
        "the rebalanced v1 layout at the baseline's training time",
        {"model": "xxs_cifar_rebalanced", "epochs": "equal-time"},
        None,
    ),
    "v2-bundle": (
        "MobileViTv2 width 0.5 with the bundle: label smoothing 0.2, warming weight average, "
        "alternating flip, batch 256 at peak rate 2.1e-3, decay to zero",
        BUNDLE,
        None,
    ),
    "v2-bundle-seed43": ("the bundle, seed 43", {**BUNDLE, "seed": 43}, None),
    "mixup": ("MixUp (alpha 0.2) after flips and shifts", {"augmentation": "mixup"}, None),
    "cutmix": ("CutMix (alpha 1.0) after flips and shifts", {"augmentation": "cutmix"}, None),
    "no-label-smoothing": ("no label smoothing", {"label_smoothing": 0.0}, None),
    "medium-augmentation": (
        "medium policy (colour, rotation, zoom)",
        {"augmentation": "medium"},
        None,
    ),
    "no-augmentation": ("no augmentation", {"augmentation": "none"}, None),
    "bilinear-shifts": ("sub-pixel (bilinear) shifts", {"augmentation": "light_bilinear"}, None),
    "baseline-seed44": ("the baseline, seed 44", {"seed": 44}, None),
    # Regularisation for the long run: the released recipe (the baseline's values on v2 for 64
    # epochs, the `cpu` preset) with random erasing in its second half, against the release.
    # The optimiser every published CIFAR MobileViT/ViT result uses: SGD with Nesterov momentum
    # (pprp/PyTorch-CIFAR-Model-Hub: peak 0.1, L2 5e-4). Keras' weight decay is decoupled
    # (w -= lr * wd * w each step); under momentum 0.9 an L2 term of 5e-4 shrinks the weights
    # 1 / (1 - 0.9) = 10 times as fast, so 5e-3 here matches it. Compared with AdamW on v2
    # seed for seed; the third AdamW seed gives that arm its spread.
    "v2-separable-attention-seed44": (
        "MobileViTv2 width 0.5, seed 44 (its own noise)",
        {"model": "v2_050_cifar", "seed": 44},
        None,
    ),
    "v2-sgd": (
        "MobileViTv2 width 0.5, SGD with Nesterov momentum 0.9 at peak rate 0.1, decoupled "
        "weight decay 5e-3 (L2 5e-4 under momentum), instead of AdamW",
        SGD,
        None,
    ),
    "v2-sgd-seed43": ("SGD on v2, seed 43", {**SGD, "seed": 43}, None),
    "v2-sgd-seed44": ("SGD on v2, seed 44", {**SGD, "seed": 44}, None),
    "release-sgd": (
        "the released recipe (v2 width 0.5, 64 epochs) with SGD (Nesterov momentum 0.9, peak "
        "rate 0.1, decoupled weight decay 5e-3) instead of AdamW",
        {**SGD, "epochs": 64},
        None,
    ),
    "release-erasing-late": (
        "the released recipe (v2 width 0.5, 64 epochs) with random erasing in the second half",
        {"model": "v2_050_cifar", "epochs": 64, "augmentation": "light_erasing_late"},
        None,
    ),
}


LAYOUT_SPEEDS = RESULTS / "layouts_train_throughput.txt"


def measured_speeds(path=LAYOUT_SPEEDS):
    """{variant: training images/s} from `benchmarks/train_throughput.py` outputs, measured in
    one sitting so that their ratios hold whatever the machine."""
    speeds, variant = {}, None
    for line in Path(path).read_text().splitlines():
        if line.startswith("$ ") and "--variant" in line:
            variant = line.split("--variant")[1].split()[0]
        elif line.startswith("training ") and line.endswith("images/s") and variant:
            speeds[variant] = float(line.split()[1])
    return speeds


def equal_time_epochs(variant, epochs, path=LAYOUT_SPEEDS):
    """Epochs of `variant` that take as long as `epochs` of the baseline's layout."""
    speeds = measured_speeds(path)
    if variant not in speeds:
        raise SystemExit(f"{variant} has no speed in {path}; measure it with train_throughput.py.")
    return max(1, round(epochs * speeds[variant] / speeds[BASELINE["model"]]))


def resolved_overrides(overrides, epochs):
    """A run's recipe overrides with its epochs spelled out."""
    overrides = {"epochs": epochs, **overrides}
    if overrides["epochs"] == "equal-time":
        overrides["epochs"] = equal_time_epochs(overrides["model"], epochs)
    return overrides


def reference_of(name, names):
    """The run that row `name` is compared with: "release" for `release-` rows (they change
    the released 64-epoch recipe; its score is the release's twin's, with the same validation
    split), v2 alone for the bundle, else the baseline; with the same seed where that run
    exists (seeds of the baseline itself against the baseline)."""
    if name.startswith("release-"):
        return "release"
    on_v2 = name.startswith(("v2-bundle", "v2-sgd"))
    base = "v2-separable-attention" if on_v2 else "baseline"
    seed = re.search(r"-seed\d+$", name)
    paired = base + seed.group(0) if seed else base
    return paired if paired in names and paired != name else base


def seed_spread(rows):
    """The noise: the spread (max - min) of the baseline's seeds' validation accuracy in points,
    or None while one seed has finished. The rows named `baseline...` are one recipe with
    different seeds; mobilevit_utils.tuning.seed_noise reads the same CSV the same way."""
    seeds = arms(rows).get("baseline", {}).values()
    return max(seeds) - min(seeds) if len(seeds) > 1 else None


def arms(rows):
    """{arm: {seed: validation accuracy in points}}: rows that differ only in their `-seedNN`
    suffix are one recipe (an arm); `release-` rows are left to the levers table."""
    grouped = {}
    for name, row in rows.items():
        if not name.startswith("release"):
            arm = re.sub(r"-seed\d+$", "", name)
            grouped.setdefault(arm, {})[int(row["seed"])] = 100 * float(row["val_accuracy"])
    return grouped


def arm_comparison(values, reference):
    """Difference of the two arms' means in points, its Welch 95 % interval, and a verdict that
    needs at least 3 seeds per arm (a training change is judged by each arm's spread)."""
    from scipy import stats

    a, b = list(values.values()), list(reference.values())
    delta = sum(a) / len(a) - sum(b) / len(b)
    if min(len(a), len(b)) < 3:
        return delta, None, f"not enough runs to tell ({len(a)} and {len(b)} seeds; 3 needed)"
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    verdict = "helps" if low > 0 else "hurts" if high < 0 else "no difference shown"
    return delta, (low, high), verdict


def arm_table(rows):
    """The arms measured with more than one seed: each seed, mean ± standard deviation, and
    the difference from the arm it changes (`reference_of`), with a Welch interval."""
    from statistics import mean, stdev

    grouped = arms(rows)
    lines = [
        "| arm | seeds: val accuracy (%) | mean ± sd | vs | difference of means (95 % CI) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for arm, values in grouped.items():
        if len(values) < 2:
            continue
        seeds = ", ".join(f"{seed}: {v:.2f}" for seed, v in sorted(values.items()))
        spread = f"{mean(values.values()):.2f} ± {stdev(values.values()):.2f}"
        base = reference_of(arm, grouped)
        versus = difference = verdict = "-"
        if base != arm and base in grouped:
            delta, interval, verdict = arm_comparison(values, grouped[base])
            versus = base
            difference = f"{delta:+.2f}" + (
                f" ({interval[0]:+.2f} to {interval[1]:+.2f})" if interval else ""
            )
        lines.append(f"| {arm} | {seeds} | {spread} | {versus} | {difference} | {verdict} |")
    return "\n".join(lines)


def read_rows(csv_path):
    if not csv_path.exists():
        return {}
    with open(csv_path, newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def write_rows(rows, csv_path):
    """Rows in `RUNS` order; written to a temporary file first so a crash never truncates it."""
    order = {name: i for i, name in enumerate(RUNS)}
    from benchmarks.readme_tables import write_csv

    ordered = sorted(rows.values(), key=lambda row: order.get(row["name"], len(order)))
    for row in ordered:
        row["compared_with"] = reference_of(row["name"], rows)
    write_csv(ordered, csv_path, COLUMNS)


def keep_run_files(run_dir, results_dir, name):
    """The run's config, history and metadata (no weights) beside the CSV."""
    target = results_dir / "ablations" / name
    target.mkdir(parents=True, exist_ok=True)
    for file in ("config.json", "history.csv", "metadata.json"):
        shutil.copy2(run_dir / file, target / file)


def measure(name, dataset, epochs, runs_dir, results_dir, print_fn=print):
    """Train (or resume) run `name` and return its CSV row."""
    from mobilevit_utils import evaluation, models, training

    change, overrides, tta = RUNS[name]
    source = name if overrides is not None else "baseline"
    run_dir = runs_dir / source
    finished = training.run_finished(run_dir)
    if overrides is None and not finished:
        raise SystemExit(f"{name} evaluates the baseline's checkpoint; run 'baseline' first.")
    if not finished:
        training.train(
            "cpu",
            run_dir=run_dir,
            dataset=dataset,
            resume=True,
            print_fn=print_fn,
            **{**BASELINE, **resolved_overrides(overrides, epochs)},
        )
    if overrides is not None:  # also when a finished run's row was not written before a crash
        keep_run_files(run_dir, results_dir, name)
    model, metadata = training.load_run(run_dir, compile=False)
    metadata = training.RunMetadata.from_dict(metadata)
    report = evaluation.evaluate(
        model,
        dataset.x_val,
        dataset.y_val,
        dataset.class_names,
        flip=tta in ("flip", "flip+shift"),
        shift=tta == "flip+shift",
    )
    config = json.loads((run_dir / "config.json").read_text())
    history = training.read_history(run_dir)
    train_time = training.fit_seconds(history)  # resumed sessions all count
    return {
        "name": name,
        "change": change,
        "seed": config["seed"],
        "epochs": len(history),
        "val_accuracy": f"{report.accuracy:.4f}",
        "macro_f1": f"{report.macro_f1:.4f}",
        "train_time_s": f"{train_time:.0f}",
        "images_per_s": f"{len(history) * metadata.train_images / train_time:.1f}",
        "params": models.trainable_params(model),
        "macs": models.count_macs(model),
    }


def markdown_table(rows):
    """The README's "what helps" table: each row against the baseline, with the spread of the
    baseline's seeds as the noise to compare with."""
    if "baseline" not in rows:
        return "No ablation has finished yet."
    base = float(rows["baseline"]["val_accuracy"])
    seeds = [name for name in rows if name.startswith("baseline")]
    spread = seed_spread(rows)
    lines = [
        "| run | change against the baseline | epochs | val accuracy | vs baseline | macro F1 | fit time | MACs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        # A release- row changes the released long recipe: the levers table compares it with
        # the release (compared_with), as a 12-epoch baseline would say nothing about it.
        delta = 100 * (float(row["val_accuracy"]) - base)
        versus = "see levers" if reference_of(name, rows) == "release" else f"{delta:+.2f}"
        lines.append(
            f"| {name} | {row['change']} | {row['epochs']} | {100 * float(row['val_accuracy']):.2f} % | "
            f"{versus} | {float(row['macro_f1']):.4f} | {int(row['train_time_s']) / 60:.0f} min | "
            f"{int(row['macs']) / 1e6:.1f} M |"
        )
    noise = (
        f"The baseline's {len(seeds)} seeds span {spread:.2f} points: a one-seed difference "
        "smaller than that is noise, and a larger one is a lead until its arm has 3 seeds (below)."
        if spread is not None
        else "Only one seed of the baseline has finished, so the noise is not measured yet."
    )
    return (
        "\n".join(lines)
        + "\n\nEvery run: the `cpu` recipe on the same 45,000/5,000 split, one change each, for "
        "12 epochs, or, for the equal-time rows, as many as the baseline's 12 take at the "
        "layout's measured speed (benchmarks/results/layouts_train_throughput.txt); `release-` "
        "rows change the released recipe and are compared with it (the release's twin, on the same "
        f"split) in the levers table. {noise} Fit times include validation and were measured "
        "while other work shared the two cores."
        + "\n\nArms run with several seeds: each arm's spread judges a training change (Welch's "
        "t interval, `scipy.stats.ttest_ind`; a verdict needs 3 seeds per arm).\n\n"
        + arm_table(rows)
    )


def write_readme(rows, readme):
    from benchmarks.readme_tables import replace_block

    replace_block(readme, "ablations", markdown_table(rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(RUNS), help="these runs only")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--data-dir", help="dataset folder (default $MOBILEVIT_DATA_DIR)")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "artifacts" / "ablations")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where ablations.csv and the runs' files go",
    )
    parser.add_argument(
        "--max-per-class",
        type=int,
        help="train on a subset (a smoke test of the runner, not a measurement)",
    )
    parser.add_argument("--redo", action="store_true", help="measure rows already in the CSV again")
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    parser.add_argument(
        "--readme", type=Path, help="rewrite this README's ablation table from the CSV and exit"
    )
    args = parser.parse_args(argv)
    if args.readme:
        rows = read_rows(args.results_dir / "ablations.csv")
        write_rows(rows, args.results_dir / "ablations.csv")  # derived columns up to date
        write_readme(rows, args.readme)
        return
    if args.list:
        for name, (change, _, _) in RUNS.items():
            print(f"{name:22s} {change}")
        return

    from mobilevit_utils import data

    dataset = data.load_dataset(
        args.data_dir, validation_split=0.1, seed=SPLIT_SEED, max_per_class=args.max_per_class
    )
    csv_path = args.results_dir / "ablations.csv"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    rows = read_rows(csv_path)
    for name in args.only or list(RUNS):
        if name in rows and not args.redo:
            print(f"{name}: done (val_accuracy {rows[name]['val_accuracy']})")
            continue
        print(f"{name}: {RUNS[name][0]}", flush=True)
        rows[name] = measure(
            name,
            dataset,
            args.epochs,
            args.runs_dir,
            args.results_dir,
            print_fn=lambda line: print(f"  {line}", flush=True),
        )
        # Merged with the file as it is now: another runner may have added rows meanwhile.
        write_rows({**read_rows(csv_path), name: rows[name]}, csv_path)
        print(f"{name}: val_accuracy {rows[name]['val_accuracy']}", flush=True)


if __name__ == "__main__":
    main()
