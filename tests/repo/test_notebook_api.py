"""Every name the notebooks use from the package still exists where they import it from, so
that the committed notebooks and their executed copies in docs/ keep running after the
package is reorganised."""

import ast
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The notebooks, and the worked solutions of their exercises (solutions/), which import alike.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb")) + sorted(
    (ROOT / "solutions").glob("0*.ipynb")
)


def package_names_used(notebook):
    """{(module, name)} for `from mobilevit_utils.m import name` and `m.name` after
    `from mobilevit_utils import m [as alias]`, in the notebook's code cells."""
    cells = json.loads(notebook.read_text())["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("!", "%"))  # shell and magics are not Python
    ]
    tree = ast.parse("\n".join(lines))
    used, modules = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilevit_utils"):
            for alias in node.names:
                if node.module == "mobilevit_utils":
                    modules[alias.asname or alias.name] = alias.name
                else:
                    used.add((node.module.split(".", 1)[1], alias.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in modules:
                used.add((modules[node.value.id], node.attr))
    return used


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_name_a_notebook_uses_is_importable(notebook):
    used = package_names_used(notebook)
    assert used, "the notebook imports nothing from the package: the parser missed its imports"
    missing = [
        f"mobilevit_utils.{module}.{name}"
        for module, name in sorted(used)
        if not hasattr(importlib.import_module(f"mobilevit_utils.{module}"), name)
    ]
    assert not missing, f"{notebook.name} uses names the package no longer has: {missing}"
