"""benchmarks/ablations.py and benchmarks/levers.py: the commands behind the README's "what
helps" and levers tables, run on a tiny image folder, and the README's tables checked against
the committed results."""

import csv
import sys
from pathlib import Path

from helpers import learnable_images, write_image_tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import ablations, epoch_scaling, levers  # noqa: E402
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


def test_readme_tables_match_the_committed_results(tmp_path):
    """Every number in the README's ablation and levers tables comes from committed files."""
    readme = (ROOT / "README.md").read_text()
    rows = ablations.read_rows(ablations.RESULTS / "ablations.csv")
    assert _block(readme, "ablations") == ablations.markdown_table(rows).strip()
    assert _block(readme, "levers") == levers.table(rows).strip()

    copy = tmp_path / "README.md"
    copy.write_text(readme)
    replace_block(copy, "levers", levers.table(rows))
    assert copy.read_text() == readme


def test_epoch_scaling_reproduces_the_committed_bilinear_series(capsys):
    """The kept files of the bilinear-shift runs (12, 24, 48 epochs) give the committed output."""
    runs = sorted(str(p) for p in (ablations.RESULTS / "epoch_scaling").iterdir())
    epoch_scaling.main(runs)
    printed = capsys.readouterr().out
    committed = (ablations.RESULTS / "epoch_scaling_bilinear.txt").read_text()
    assert printed.strip() == committed.split("\n", 1)[1].strip()  # after the command line
    assert "12 -> 24 epochs: +3.82 points per doubling" in printed
