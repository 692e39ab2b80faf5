"""The package's design, checked: its parts depend on each other one way only, no function is
over 80 lines and no module over 600."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mobilevit_utils"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600


def part_of(path):
    """The top-level part a file belongs to: a module's stem, or a subpackage's folder name."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def imported_parts(path):
    """The package's top-level parts that `path` imports, at module level or inside functions
    (absolute imports: the package uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        assert not (isinstance(node, ast.ImportFrom) and node.level), (
            f"{path.relative_to(PACKAGE)}: use absolute imports (mobilevit_utils.…)"
        )
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilevit_utils"):
            if node.module == "mobilevit_utils":
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mobilevit_utils" and len(parts) > 1:
                    found.add(parts[1])
    return found - {part_of(path)}


def test_no_import_cycles_between_the_package_parts():
    parts = {part_of(path) for path in SOURCES} - {"__init__", "__main__"}
    graph = {part: set() for part in parts}
    for path in SOURCES:
        if part_of(path) in graph:
            graph[part_of(path)] |= imported_parts(path) & parts

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle for part in sorted(graph) if (cycle := cycle_from(part))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, (
        f"{path.name} has {len(text.splitlines())} lines; split it by role"
    )
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"
