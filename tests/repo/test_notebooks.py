"""Committed notebooks are clean, consistent and point at themselves from Colab."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
BADGE = re.compile(r"colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/(\S+?\.ipynb)")

spec = importlib.util.spec_from_file_location(
    "clean_notebooks", ROOT / "tools" / "clean_notebooks.py"
)
clean_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clean_notebooks)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs not stripped"
    assert clean_notebooks.dumps(clean_notebooks.clean(nb)) == text, "run `make format-notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_badge_then_setup(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0].source
    assert first.startswith("# ")
    badges = BADGE.findall(first)
    assert badges == [f"notebooks/{path.name}"], "the Colab badge must open this notebook"
    # The introduction (markdown, split into cells of readable length), then Setup.
    setup = next(i for i, cell in enumerate(nb.cells) if cell.source.startswith("## Setup"))
    assert all(cell.cell_type == "markdown" for cell in nb.cells[:setup])
    assert "parameters" in nb.cells[setup + 1].metadata.get("tags", [])
    assert "IN_COLAB" in nb.cells[setup + 2].source
    assert "setup_notebook" in nb.cells[setup + 3].source


def test_colab_urls_and_badges_agree_everywhere():
    urls = set()
    for path in NOTEBOOKS:
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        urls |= set(re.findall(r'REPO_URL = "(\S+)"', source))
    assert len(urls) == 1, urls
    readme = (ROOT / "README.md").read_text()
    for badge_path in BADGE.findall(readme):
        assert (ROOT / badge_path).is_file(), badge_path
