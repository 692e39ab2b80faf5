"""The package's design, checked: modules depend on each other one way only."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mobilevit_utils"


def package_imports(path):
    """The package modules `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("mobilevit_utils")
        ):
            if node.module == "mobilevit_utils":
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mobilevit_utils":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found - {path.stem}


def test_no_import_cycles_inside_the_package():
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph = {path.stem: package_imports(path) & modules for path in PACKAGE.glob("*.py")}
    graph.pop("__main__")  # only starts the CLI

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle for module in graph if (cycle := cycle_from(module))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
