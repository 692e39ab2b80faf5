"""Accuracy against training length: how many epochs would a target accuracy take?

Reads finished runs of the same recipe that differ only in `epochs` (each run folder holds
config.json, metadata.json and history.csv), prints one row per run, then prints
the points gained per doubling of the epochs. Carrying the last doubling's gain on unchanged
gives a lower bound on the epochs a target accuracy needs (gains per doubling shrink); if they
shrink at the rate they did, the recipe levels off at a ceiling, which is printed too.

    python -m mobilevit_utils train --preset cpu --epochs 12 --data-dir ../shared/data --out artifacts/runs/reference-cpu-12ep
    python benchmarks/epoch_scaling.py artifacts/runs/reference-cpu-12ep artifacts/runs/reference-cpu-24ep \
        --keep benchmarks/results/epoch_scaling

The committed series (outputs in benchmarks/results/):

    # whole-pixel shifts: the 12-epoch ablation baseline and the released 48-epoch run
    python benchmarks/epoch_scaling.py benchmarks/results/ablations/baseline checkpoints/mobilevit_xxs_cifar10
    # bilinear shifts (the earlier recipe): 12, 24 and 48 epochs, kept files
    python benchmarks/epoch_scaling.py benchmarks/results/epoch_scaling/*
"""

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

RUN_FILES = ("config.json", "metadata.json", "history.csv")


def read_run(run_dir):
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {', '.join(missing)}: pass finished run folders.")
    from mobilevit_utils.training import RunMetadata, TrainConfig

    # Runs recorded before a recipe field existed ran with its default.
    config = {**TrainConfig().to_dict(), **json.loads((run_dir / "config.json").read_text())}
    metadata = RunMetadata.read(run_dir)
    if metadata.best_val_accuracy is None:
        raise ValueError(
            f"{run_dir} has no validation accuracy (a final fit on every image); pass runs "
            "with a validation split, such as its twin."
        )
    return {
        "run": run_dir.name,
        "epochs": metadata.epochs_completed,
        "accuracy": metadata.best_val_accuracy,
        "best_epoch": metadata.best_epoch,
        "hours": metadata.wall_time_s_last_session / 3600,
        "recipe": {k: v for k, v in config.items() if k != "epochs"},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished run folders of one recipe")
    parser.add_argument("--target", type=float, default=0.90, help="accuracy to extrapolate to")
    parser.add_argument(
        "--keep", help="copy each run's small files here (commit them with the output)"
    )
    args = parser.parse_args(argv)
    try:
        runs = sorted((read_run(r) for r in args.runs), key=lambda r: r["epochs"])
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    if any(r["recipe"] != runs[0]["recipe"] for r in runs) or len({r["epochs"] for r in runs}) < 2:
        sys.exit("error: the runs must share one recipe and differ in their number of epochs.")
    if args.keep:
        for run_dir in args.runs:
            kept = Path(args.keep) / Path(run_dir).name
            kept.mkdir(parents=True, exist_ok=True)
            for name in RUN_FILES:
                shutil.copy2(Path(run_dir) / name, kept / name)

    width = max(28, *(len(r["run"]) + 1 for r in runs))
    print(
        f"{'run':{width}s} {'epochs':>6s} {'best val acc':>12s} {'best epoch':>10s} {'wall h':>6s} {'h/epoch':>7s}"
    )
    for r in runs:
        print(
            f"{r['run']:{width}s} {r['epochs']:6d} {r['accuracy']:12.2%} {r['best_epoch']:10d} "
            f"{r['hours']:6.2f} {r['hours'] / r['epochs']:7.3f}"
        )
    gains = []
    for small, large in zip(runs, runs[1:]):
        gains.append(
            (large["accuracy"] - small["accuracy"]) / math.log2(large["epochs"] / small["epochs"])
        )
        print(
            f"{small['epochs']} -> {large['epochs']} epochs: {100 * gains[-1]:+.2f} points per doubling"
        )
    last = runs[-1]
    if gains[-1] <= 0:
        print("the last doubling gained nothing: no extrapolation")
        return
    epochs = last["epochs"] * 2 ** ((args.target - last["accuracy"]) / gains[-1])
    hours_per_epoch = last["hours"] / last["epochs"]
    print(
        f"{args.target:.0%} needs at least {epochs:.0f} epochs = {epochs * hours_per_epoch:.1f} h at "
        f"{hours_per_epoch * 60:.1f} min/epoch, if every further doubling gained as much as the last"
    )
    if len(gains) >= 2 and 0 < gains[-1] < gains[-2]:
        ratio = gains[-1] / gains[-2]
        ceiling = last["accuracy"] + gains[-1] * ratio / (1 - ratio)
        print(
            f"if each doubling gains {ratio:.2f}x the previous one's points (as the last two did), "
            f"accuracy levels off near {ceiling:.1%}"
        )


if __name__ == "__main__":
    main()
