"""benchmarks/ablations.py and benchmarks/levers.py: the commands behind benchmarks/README.md's
"what helps" and levers tables, run on a tiny image folder, and those tables checked against
the committed results."""

import csv
import re
import sys
from pathlib import Path

import pytest
from helpers import learnable_images, write_image_tree

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    ablations,
    epoch_scaling,
    finetune_digits,
    fit_throughput,
    levers,
    results_figure,
)
from benchmarks.readme_tables import replace_block  # noqa: E402


def _block(text, name):
    return text.split(f"<!-- {name}:start -->\n", 1)[1].split(f"\n<!-- {name}:end -->", 1)[0]


def test_ablation_runner_trains_reuses_checkpoints_and_skips_finished_rows(tmp_path, capsys):
    write_image_tree(tmp_path / "data" / "train", *learnable_images(20), ["a", "b", "c"])
    args = [
        *("--only", "baseline", "flip-tta", "--epochs", "1"),
        *("--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")),
        *("--results-dir", str(tmp_path / "results")),
    ]
    ablations.main(args)
    rows = list(csv.DictReader(open(tmp_path / "results" / "ablations.csv")))
    assert [row["name"] for row in rows] == ["baseline", "flip-tta"]
    baseline, flipped = rows
    assert baseline["epochs"] == "1" and baseline["seed"] == "42" and int(baseline["macs"]) > 0
    # Test-time augmentation reuses the baseline's checkpoint: no training of its own.
    assert flipped["train_time_s"] == baseline["train_time_s"]
    assert flipped["compared_with"] == baseline["compared_with"] == "baseline"
    kept = tmp_path / "results" / "ablations"
    assert sorted(p.name for p in kept.iterdir()) == ["baseline"]
    assert {p.name for p in (kept / "baseline").iterdir()} == {
        "config.json",
        "history.csv",
        "metadata.json",
    }

    capsys.readouterr()
    ablations.main(args)  # finished rows are skipped, not trained again
    assert "baseline: done" in capsys.readouterr().out

    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- ablations:start -->\nold\n<!-- ablations:end -->\nb\n")
    ablations.main(["--readme", str(readme), "--results-dir", str(tmp_path / "results")])
    table = _block(readme.read_text(), "ablations")
    assert "| baseline | cpu recipe" in table and "Only one seed" in table

    text = levers.table(ablations.read_rows(tmp_path / "results" / "ablations.csv"), tmp_path)
    assert "| flip-tta vs baseline |" in text
    assert "| ema | - | - | - | not measured yet |" in text
    assert "The release" not in text  # no results.json in tmp_path


def test_fit_throughput_measures_every_row_against_the_step(tmp_path, capsys):
    # The smallest run that still measures every row: 33 training images in batches of 8
    # (4 steps an epoch); the rows' costs scale with the batch, not what they prove.
    write_image_tree(tmp_path / "data" / "train", *learnable_images(12), ["a", "b", "c"])
    fit_throughput.main(
        [
            *("--preset", "quick", "--data-dir", str(tmp_path / "data"), "--batch-size", "8"),
            *("--images-per-class", "12", "--rounds", "1", "--step-repeats", "1"),
        ]
    )
    out = capsys.readouterr().out
    assert re.search(r"data +\d+ training and \d+ validation images", out)
    rows = {
        line[:38].strip(): line[38:].split()
        for line in out.splitlines()
        if line[:38].strip().startswith(("train_on_batch", "fit", "with"))
    }
    assert rows["train_on_batch step"][1] == "1.00"
    for label in (
        "fit as training.train runs it",
        "without the recipe's callbacks",
        "without validation",
        "without augmentation",
        "with steps_per_execution=8",
    ):
        assert float(rows[label][0]) > 0 and float(rows[label][1]) > 0, label


def test_equal_time_epochs_follow_the_committed_speeds():
    speeds = ablations.measured_speeds()
    assert set(speeds) >= {"xxs_cifar", "v2_050_cifar", "v2_075_cifar", "xxs_cifar_rebalanced"}
    for name in ("v2-050-equal-time", "v2-075-equal-time", "rebalanced-equal-time"):
        overrides = ablations.resolved_overrides(ablations.RUNS[name][1], 12)
        ratio = speeds[overrides["model"]] / speeds["xxs_cifar"]
        assert overrides["epochs"] == round(12 * ratio), name
    assert ablations.resolved_overrides({}, 12) == {"epochs": 12}


def test_each_row_is_compared_with_the_run_it_changes():
    names = {"baseline", "baseline-seed43", "v2-separable-attention", "ema"}
    names |= {"v2-separable-attention-seed43", "v2-bundle", "v2-bundle-seed43"}
    assert ablations.reference_of("ema", names) == "baseline"
    assert ablations.reference_of("baseline", names) == "baseline"
    assert ablations.reference_of("baseline-seed43", names) == "baseline"
    assert ablations.reference_of("ema-seed44", names) == "baseline"  # no baseline of that seed
    assert ablations.reference_of("v2-separable-attention-seed43", names) == "baseline-seed43"
    assert ablations.reference_of("v2-bundle", names) == "v2-separable-attention"
    assert ablations.reference_of("v2-bundle-seed43", names) == "v2-separable-attention-seed43"
    assert ablations.reference_of("v2-sgd", names) == "v2-separable-attention"
    assert ablations.reference_of("v2-sgd-seed43", names) == "v2-separable-attention-seed43"
    assert ablations.reference_of("release-erasing-late", names) == "release"


def test_readme_tables_match_the_committed_results(tmp_path):
    """Every number in the ablation and levers tables comes from committed files."""
    readme = BENCHMARKS_README.read_text()
    rows = ablations.read_rows(ablations.RESULTS / "ablations.csv")
    assert all(row["compared_with"] == ablations.reference_of(n, rows) for n, row in rows.items())
    assert _block(readme, "ablations") == ablations.markdown_table(rows).strip()
    assert _block(readme, "levers") == levers.table(rows).strip()

    copy = tmp_path / "README.md"
    copy.write_text(readme)
    replace_block(copy, "levers", levers.table(rows))
    assert copy.read_text() == readme


def test_the_benchmarks_and_notebook_06_measure_the_same_seed_noise():
    """benchmarks/ (no Keras) and mobilevit_utils.tuning (notebook 06) read the noise alike."""
    import pandas as pd

    from mobilevit_utils import tuning

    csv_path = ablations.RESULTS / "ablations.csv"
    spread = ablations.seed_spread(ablations.read_rows(csv_path))
    assert spread > 0
    assert tuning.seed_noise(pd.read_csv(csv_path)) == pytest.approx(spread)


def test_epoch_scaling_reproduces_the_committed_bilinear_series(capsys):
    """The kept files of the bilinear-shift runs (12, 24, 48 epochs) give the committed output."""
    runs = sorted(str(p) for p in (ablations.RESULTS / "epoch_scaling").iterdir())
    epoch_scaling.main(runs)
    printed = capsys.readouterr().out
    committed = (ablations.RESULTS / "epoch_scaling_bilinear.txt").read_text()
    assert printed.strip() == committed.split("\n", 1)[1].strip()  # after the command line
    assert "12 -> 24 epochs: +3.82 points per doubling" in printed


def test_finetune_digits_table_and_readme_come_from_the_committed_runs():
    rows = finetune_digits.read_rows(finetune_digits.RESULTS / "finetune_digits.csv")
    assert {(int(r["images_per_class"]), r["method"]) for r in rows} == {
        (n, m) for n in finetune_digits.SIZES for m in finetune_digits.METHODS
    }
    (_, _), (_, y_test) = finetune_digits.splits()
    table = finetune_digits.markdown(rows, len(y_test))
    assert (finetune_digits.RESULTS / "finetune_digits.md").read_text() == table + "\n"
    readme = BENCHMARKS_README.read_text()
    for (n, method), (mean, _) in finetune_digits.summary(rows).items():
        assert f"{100 * mean:.1f}" in readme, (n, method)


def test_results_figure_plots_every_layout_and_release(tmp_path):
    from mobilevit_utils import presets

    rows = ablations.read_rows(ablations.RESULTS / "ablations.csv")
    released = results_figure.releases()
    points = results_figure.points(rows, released)
    labels = [p["label"] for p in points]
    assert sum(p["kind"] == "release" for p in points) == len(released) >= 1
    assert not {name for name, _ in released} & {p.twin for p in presets.PRESETS.values()}
    assert all(any(name in label for label in labels) for name in results_figure.EQUAL_TIME)
    baseline = next(p for p in points if p["label"].startswith("xxs_cifar (v1)"))
    assert baseline["low"] <= baseline["accuracy"] <= baseline["high"]
    results_figure.main(["--out", str(tmp_path / "figure.png")])
    assert (tmp_path / "figure.png").stat().st_size > 10_000


def test_levers_read_the_current_release():
    """levers.py names the release's folder and its twin's without importing Keras; they must be
    the presets'."""
    from mobilevit_utils import presets, training

    release = presets.PRESETS[training.RELEASED_PRESET]
    assert levers.RELEASE == ROOT / release.checkpoint
    assert levers.RELEASE_TWIN == ROOT / presets.PRESETS[release.twin].checkpoint


def test_arms_judge_a_training_change_by_each_arms_spread():
    """Seeds of one recipe form an arm; a change is judged by Welch's interval over the arms,
    and only with 3 seeds on each side."""

    def row(seed, accuracy):
        return {"seed": str(seed), "val_accuracy": str(accuracy)}

    rows = {"baseline": row(42, 0.80), "baseline-seed43": row(43, 0.81)}
    rows |= {"baseline-seed44": row(44, 0.82), "ema": row(42, 0.84), "ema-seed43": row(43, 0.85)}
    grouped = ablations.arms(rows)
    assert grouped["ema"] == pytest.approx({42: 84.0, 43: 85.0})
    assert (
        "not enough runs to tell"
        in ablations.arm_comparison(grouped["ema"], grouped["baseline"])[2]
    )

    grouped["ema"][44] = 86.0
    delta, (low, high), verdict = ablations.arm_comparison(grouped["ema"], grouped["baseline"])
    # By hand: both sds 1, standard error sqrt(1/3 + 1/3), Welch's df 4, t(0.975, 4) = 2.7764.
    half = 2.7764 * (2 / 3) ** 0.5
    assert delta == pytest.approx(4.0)
    assert (low, high) == pytest.approx((4.0 - half, 4.0 + half), abs=1e-3)
    assert verdict == "helps"
    rows["ema-seed44"] = row(44, 0.86)
    assert (
        "| ema | 42: 84.00, 43: 85.00, 44: 86.00 | 85.00 ± 1.00 | baseline |"
        in ablations.arm_table(rows)
    )


def test_gpu_recipe_scales_the_measured_cpu_choices():
    """The `gpu` recipe, never run on a GPU, follows the rules benchmarks/README.md states: the
    cpu recipe's layout, policy and label smoothing, no EMA; the SGD ablation's optimiser with
    its rate scaled linearly with the batch; the cpu recipe's share of warm-up."""
    from mobilevit_utils import training

    cpu, gpu = training.RECIPES["cpu"], training.RECIPES["gpu"]
    assert (gpu.model, gpu.augmentation, gpu.label_smoothing) == (
        cpu.model,
        cpu.augmentation,
        cpu.label_smoothing,
    )
    assert not gpu.ema and not gpu.weight_averaging and gpu.transformer_dropout == 0
    sgd = ablations.SGD
    assert (gpu.optimizer, gpu.weight_decay) == (sgd["optimizer"], sgd["weight_decay"])
    assert gpu.learning_rate == pytest.approx(
        sgd["learning_rate"] * gpu.batch_size / cpu.batch_size
    )
    assert round(gpu.epochs * cpu.warmup_epochs / cpu.epochs) == gpu.warmup_epochs
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert "**Never run on a GPU.**" in readme.split("## The `gpu` recipe")[1]


def test_peers_table_is_the_committed_run():
    """benchmarks/README.md's peers table is the output of `python benchmarks/peers.py`, as
    committed in benchmarks/results/peers.txt, row for row."""
    committed = (ROOT / "benchmarks" / "results" / "peers.txt").read_text().splitlines()
    assert committed[0] == "$ python benchmarks/peers.py"
    rows = [line for line in committed if line.startswith("|")]
    readme = (ROOT / "benchmarks" / "README.md").read_text().split("## Peers, side by side")[1]
    section = readme.split("\n## ")[0]
    assert [line for line in section.splitlines() if line.startswith("|")] == rows
    assert len(rows) >= 2 + 8  # header, rule, and at least the 256x256 and 32x32 rows
