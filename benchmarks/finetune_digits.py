"""Fine-tuning the released CIFAR-10 model against training from scratch, on data nobody here
made: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), upscaled to 32x32.

A fixed 30 % of the digits (stratified, seed 0) is the test set every run is scored on. From the
rest, each run trains on the first N images of every class (N = 10, 50, 125), for the same
number of epochs either way:

- fine-tuned: the `finetune` preset from `mobilevit_xxs_cifar10` (head alone for its
  head_epochs, then every layer for its epochs);
- from scratch: the same layout, randomly initialised, trained by the `cpu` recipe's optimiser
  settings for head_epochs + epochs.

No validation split (there is none to spare at 10 images per class): both keep their last
epoch. Writes benchmarks/results/finetune_digits.csv (a row per run; rerunning skips finished
rows), finetune_digits.md (the table) and finetune_digits.png (the plot).

    python benchmarks/finetune_digits.py                   # every missing run
    python benchmarks/finetune_digits.py --report          # table and plot from the CSV only
    python benchmarks/finetune_digits.py --choose-lr       # the finetune preset's learning rates
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.readme_tables import write_csv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SIZES = (10, 50, 125)
SEEDS = (0, 1, 2)
METHODS = ("fine-tuned", "from scratch")
COLUMNS = ("images_per_class", "method", "seed", "epochs", "test_accuracy", "train_time_s")


def splits(seed=0):
    """(train pool, test) as ((x, y), (x, y)): 30 % held out, stratified."""
    from sklearn.model_selection import train_test_split

    from mobilevit_utils import data

    x, y = data.load_digits_images()
    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=0.3, random_state=seed, stratify=y
    )
    return (x_pool, y_pool), (x_test, y_test)


def first_per_class(x, y, n):
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)]))
    return x[keep], y[keep]


def recipes():
    """{method: (preset, overrides)} at equal epochs."""
    from mobilevit_utils import training

    finetune = training.get_recipe("finetune")
    total = finetune.head_epochs + finetune.epochs
    cpu = training.get_recipe("cpu")
    scratch = {
        field: getattr(cpu, field)
        for field in ("learning_rate", "min_learning_rate", "weight_decay", "warmup_epochs")
    }
    return {
        "fine-tuned": ("finetune", {}),
        "from scratch": (
            "finetune",
            {**scratch, "init_from": None, "head_epochs": 0, "epochs": total},
        ),
    }


def measure(n, method, seed, pool, test):
    from mobilevit_utils import data, evaluation, training

    x, y = first_per_class(*pool, n)
    names = tuple(str(d) for d in range(10))
    dataset = data.ImageDataset(x, y, x[:0], y[:0], names, "sklearn.datasets.load_digits")
    preset, overrides = recipes()[method]
    with tempfile.TemporaryDirectory() as run_dir:
        result = training.train(
            preset,
            run_dir=Path(run_dir) / "run",
            dataset=dataset,
            validation_split=0.0,
            seed=seed,
            print_fn=lambda *_: None,
            **overrides,
        )
        config = result["config"]
        epochs = config.epochs + (config.head_epochs if config.init_from else 0)
        seconds = training.fit_seconds(result["history"])
        if config.init_from:  # the frozen-backbone head phase trains first, in its own folder
            seconds += training.fit_seconds(training.read_history(Path(run_dir) / "run" / "head"))
        report = evaluation.evaluate(result["model"], *test, names)
    return {
        "images_per_class": n,
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "test_accuracy": f"{report.accuracy:.4f}",
        "train_time_s": f"{seconds:.0f}",
    }


# Candidate (learning_rate, head_learning_rate) pairs for the finetune preset, judged by
# --choose-lr on training-pool digits that the run does not train on (never the test set).
LR_CANDIDATES = ((2e-4, 1e-3), (5e-4, 3e-3), (1e-3, 3e-3))


def choose_learning_rates(pool, n=50, seed=0):
    """Fine-tune on the first `n` pool images per class with each candidate; print accuracy on
    the pool's other images."""
    from mobilevit_utils import data, evaluation, training

    x, y = pool
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)]))
    rest = np.setdiff1d(np.arange(len(y)), keep)
    names = tuple(str(d) for d in range(10))
    dataset = data.ImageDataset(x[keep], y[keep], x[:0], y[:0], names, "digits")
    for lr, head_lr in LR_CANDIDATES:
        with tempfile.TemporaryDirectory() as run_dir:
            result = training.train(
                "finetune",
                run_dir=Path(run_dir) / "run",
                dataset=dataset,
                validation_split=0.0,
                seed=seed,
                learning_rate=lr,
                head_learning_rate=head_lr,
                print_fn=lambda *_: None,
            )
            accuracy = evaluation.evaluate(result["model"], x[rest], y[rest], names).accuracy
        print(
            f"lr {lr} head {head_lr}: pool images not trained on ({len(rest)}): {accuracy:.4f}",
            flush=True,
        )


def read_rows(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary(rows):
    """{(n, method): (mean accuracy, [accuracies])}."""
    table = {}
    for row in rows:
        key = (int(row["images_per_class"]), row["method"])
        table.setdefault(key, []).append(float(row["test_accuracy"]))
    return {key: (float(np.mean(values)), values) for key, values in sorted(table.items())}


def difference(table, n):
    """Fine-tuned minus from scratch at `n` images per class (`table`: `summary`'s), in points:
    the difference of the seeds' means, its Welch 95 % interval and verdict
    (ablations.arm_comparison: 3 seeds each needed), or None where a method has no run."""
    from benchmarks.ablations import arm_comparison

    if not all((n, method) in table for method in METHODS):
        return None
    # arm_comparison reads each arm's values ({seed: points}); the seeds' order is theirs.
    return arm_comparison(
        *({i: 100 * v for i, v in enumerate(table[(n, method)][1])} for method in METHODS)
    )


def markdown(rows, test_images):
    table = summary(rows)
    lines = [
        "| images per class | fine-tuned | from scratch | difference (95 % CI) | verdict |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({n for n, _ in table}):
        cells = []
        for method in METHODS:
            mean, values = table.get((n, method), (None, []))
            cells.append(
                "not measured"
                if mean is None
                else f"{100 * mean:.1f} % ({', '.join(f'{100 * v:.1f}' for v in values)})"
            )
        compared = difference(table, n)
        diff, verdict = "-", "-"
        if compared:
            delta, interval, verdict = compared
            diff = f"{delta:+.1f} points" + (
                f" ({interval[0]:+.1f} to {interval[1]:+.1f})" if interval else ""
            )
        lines.append(f"| {n} | {cells[0]} | {cells[1]} | {diff} | {verdict} |")
    epochs = sorted({str(row["epochs"]) for row in rows})
    return "\n".join(lines) + (
        f"\n\nTest accuracy on the same {test_images:,} held-out digits: the mean over seeds, "
        f"each seed's in brackets; {'/'.join(epochs)} epochs either way. The difference's "
        "interval is Welch's (`scipy.stats.ttest_ind`, each method's seeds as one arm): "
        '"helps" where it lies above zero. '
        "Made by `python benchmarks/finetune_digits.py`. The finetune preset's learning rates "
        "were chosen on training digits held out from a 50-per-class run, never on these test "
        "digits ([finetune_digits_lr.txt](finetune_digits_lr.txt))."
    )


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevit_utils import plots

    table = summary(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(METHODS, ("o", "s")):
        points = sorted(
            (n, mean, values) for (n, m), (mean, values) in table.items() if m == method
        )
        if not points:
            continue
        ns = [p[0] for p in points]
        ax.plot(ns, [100 * p[1] for p in points], marker=marker, label=method)
        for n, _, values in points:
            ax.scatter([n] * len(values), [100 * v for v in values], color="grey", s=8, zorder=3)
    ax.set_xscale("log")
    ax.set_xticks(SIZES, [str(n) for n in SIZES])
    ax.set_xlabel("training images per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("sklearn digits: fine-tuning the CIFAR-10 model vs from scratch")
    ax.legend()
    plots.save(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only the table and plot")
    parser.add_argument(
        "--choose-lr",
        action="store_true",
        help="compare the finetune preset's candidate learning rates on held-out pool digits",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    args = parser.parse_args(argv)

    csv_path = args.results_dir / "finetune_digits.csv"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    rows = read_rows(csv_path)
    pool, test = splits()
    if args.choose_lr:
        from mobilevit_utils import environment

        environment.start_backend_quietly()
        choose_learning_rates(pool)
        return
    if not args.report:
        from mobilevit_utils import environment

        environment.start_backend_quietly()
        done = {(int(r["images_per_class"]), r["method"], int(r["seed"])) for r in rows}
        for n in args.sizes:
            for seed in args.seeds:
                for method in METHODS:
                    if (n, method, seed) in done:
                        continue
                    rows.append(measure(n, method, seed, pool, test))
                    write_csv(rows, csv_path, COLUMNS)
                    print(
                        f"{n} per class, {method}, seed {seed}: {rows[-1]['test_accuracy']}",
                        flush=True,
                    )
    (args.results_dir / "finetune_digits.md").write_text(markdown(rows, len(test[1])) + "\n")
    plot(rows, args.results_dir / "finetune_digits.png")
    print(markdown(rows, len(test[1])))


if __name__ == "__main__":
    main()
