"""docs/ holds executed copies of the notebooks (`make docs`, full runs) for readers who never
run anything. Their code must be the notebooks' code, so that what readers see is what runs."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
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
    outputs = [c.get("outputs") for c in nbformat.read(executed, as_version=4).cells]
    assert any(outputs), f"docs/{notebook.name} has no outputs"
