"""Every notebook ends with exercises, and every exercise has a worked solution that CI runs:
solutions/<the notebook's name>.ipynb, one `## Exercise N · title` section per exercise, run by
`make test` (nbval, quick mode) beside the notebooks. The executed copies in docs/ carry the same
exercises cell (tests/repo/test_docs.py), and the names a solution uses from the package are
checked with the notebooks' (tests/repo/test_notebook_api.py)."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("0*.ipynb"))
BADGE = re.compile(r"colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/(\S+?\.ipynb)")
ITEM = re.compile(r"^\d+\. \*\*(.+?)\*\*", re.M)  # "1. **Title.** ..."
LINK = re.compile(r"\]\(([^)\s]+)\)")


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


clean_notebooks = load("clean_notebooks", ROOT / "tools" / "clean_notebooks.py")


def cells(path):
    return nbformat.read(path, as_version=4).cells


def exercises(path):
    """The notebook's last cell, which must be its exercises."""
    last = cells(path)[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Exercises\n"), (
        f"{path.name} must end with a markdown cell that starts with '## Exercises'"
    )
    return last.source


def titles(text):
    return [title.rstrip(".") for title in ITEM.findall(text)]


def test_every_notebook_has_a_solution_and_every_solution_a_notebook():
    assert SOLUTIONS, "no solutions/0*.ipynb found"
    assert [p.name for p in SOLUTIONS] == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_ends_with_exercises_that_link_their_solution(notebook):
    text = exercises(notebook)
    found = titles(text)
    assert 3 <= len(found) <= 5, f"{notebook.name}: 3 to 5 numbered exercises, found {found}"
    items = re.split(r"^\d+\. ", text, flags=re.M)[1:]
    solution = f"../solutions/{notebook.name}"
    for number, item in enumerate(items, 1):
        assert f"]({solution})" in item, (
            f"{notebook.name}: exercise {number} does not link {solution}"
        )
    for target in LINK.findall(text):
        path = (notebook.parent / target.split("#")[0]).resolve()
        assert path.is_file(), f"{notebook.name}: the exercises link {target}, which does not exist"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_solution_solves_each_exercise_in_order(notebook):
    solution = ROOT / "solutions" / notebook.name
    if not solution.exists():
        pytest.fail(f"no solutions/{notebook.name}")
    headings = [
        m.group(2)
        for cell in cells(solution)
        if cell.cell_type == "markdown"
        and (m := re.match(r"## Exercise (\d+) · (.+)", cell.source.splitlines()[0]))
    ]
    assert headings == titles(exercises(notebook)), (
        f"solutions/{notebook.name}: one '## Exercise N · title' section per exercise of the "
        "notebook, with its title, in order"
    )


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_is_committed_clean_and_set_up_like_a_notebook(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert clean_notebooks.dumps(clean_notebooks.clean(nb)) == text, (
        f"run `python tools/clean_notebooks.py solutions/{path.name}`"
    )
    assert BADGE.findall(nb.cells[0].source) == [f"solutions/{path.name}"], "its own Colab badge"
    assert f"(../notebooks/{path.name})" in nb.cells[0].source, "a link to its notebook"
    setup = next(i for i, cell in enumerate(nb.cells) if cell.source.startswith("## Setup"))
    assert "parameters" in nb.cells[setup + 1].metadata.get("tags", [])
    assert "QUICK" in nb.cells[setup + 1].source, "quick mode (MOBILEVIT_QUICK=1) is what CI runs"
    assert "IN_COLAB" in nb.cells[setup + 2].source
    assert "setup_notebook" in nb.cells[setup + 3].source


def test_make_test_runs_and_lints_the_solutions():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^SOLUTIONS := .*solutions/0\*\.ipynb", makefile, re.M)
    for target in ("test", "notebook-test"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
        assert "$(SOLUTIONS)" in recipe, f"`make {target}` must run the solutions"
    lint_paths = re.search(r"^LINT_PATHS := (.*)$", makefile, re.M).group(1).split()
    assert "solutions" in lint_paths
