"""docs/ holds executed copies of the notebooks (`make docs`, full runs) for readers who never
run anything. Their code must be the notebooks' code, so that what readers see is what runs."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
DOCS = ROOT / "docs"


def code_cells(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_copy_runs_the_notebooks_code(notebook):
    executed = DOCS / notebook.name
    if not executed.exists():
        pytest.skip(f"docs/{notebook.name} not made yet (make docs)")
    assert code_cells(executed) == code_cells(notebook), (
        f"docs/{notebook.name} is out of date: rerun `make docs`"
    )
    cells = nbformat.read(executed, as_version=4).cells
    assert any(c.get("outputs") for c in cells), f"docs/{notebook.name} has no outputs"
    # The exercises (the last cell, tests/repo/test_solutions.py) are read on the site too.
    assert cells[-1].source == nbformat.read(notebook, as_version=4).cells[-1].source, (
        f"docs/{notebook.name}: copy the notebook's exercises cell (markdown, no rerun needed)"
    )


def test_cited_full_mode_times_are_those_the_executed_copies_record():
    """notebooks/README.md and the README cite the docs/ copies' run times: the committed
    benchmarks/results/notebook_times_full.txt, which must be what its command prints now."""
    import re
    import sys

    sys.path.insert(0, str(ROOT))
    from benchmarks import notebook_times

    copies = sorted(DOCS.glob("0*.ipynb"))
    committed = (ROOT / "benchmarks" / "results" / "notebook_times_full.txt").read_text()
    assert committed.split("\n", 1)[1].strip() == notebook_times.report(copies), (
        "docs/ was regenerated: rerun `python benchmarks/notebook_times.py docs/*.ipynb` into "
        "benchmarks/results/notebook_times_full.txt and update notebooks/README.md"
    )
    measured = notebook_times.times(copies)
    paragraph = (ROOT / "notebooks" / "README.md").read_text().split("Full mode (")[1]
    cited = dict(re.findall(r"\b(0\d) ([\d,]+) s\b", paragraph.split("\n\n")[0]))
    assert cited == {name[:2]: f"{seconds:,}" for name, seconds in measured.items()}
    in_all = re.search(r"(\d+) minutes in all", paragraph)
    assert in_all and int(in_all.group(1)) == round(sum(measured.values()) / 60)
    hours = {"one": 1, "two": 2, "three": 3}
    said = re.search(r"runs the full series, about (\w+)\s+hours", (ROOT / "README.md").read_text())
    assert said and hours[said.group(1)] == round(sum(measured.values()) / 3600)


def test_cited_quick_mode_times_are_the_committed_measurement():
    """The quick-mode column of notebooks/README.md is benchmarks/results/notebook_times_quick.txt
    (a quick `make tutorial`, read by benchmarks/notebook_times.py), not typed by hand."""
    import re

    measured = (ROOT / "benchmarks" / "results" / "notebook_times_quick.txt").read_text()
    expected = {
        name: seconds for name, seconds in re.findall(r"^(0\d)\w*: ([\d,]+) s$", measured, re.M)
    }
    rows = [
        row
        for row in (ROOT / "notebooks" / "README.md").read_text().splitlines()
        if re.match(r"\| \[0\d_", row)
    ]
    cited = {row[3:5]: row.split(" | ")[3].removesuffix(" s") for row in rows}
    assert len(expected) == len(NOTEBOOKS) and cited == expected
