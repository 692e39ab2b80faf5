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


# One image decoder (issue 40): a second way to read image files would bring back the faults the
# decoder fixes (EXIF orientation ignored, 16-bit images clipped to white, transparency shown
# black), for whatever path used it.
DECODER = PACKAGE / "data" / "decode.py"
# What decodes an image file: Pillow's `Image.open`, Keras' `load_img` and
# `image_dataset_from_directory`, TensorFlow's `tf.io.decode_*` / `tf.image.decode_*`, and
# `imread` (OpenCV, imageio, Matplotlib).
DECODING_NAMES = {"load_img", "image_dataset_from_directory", "imread"}
# Modules other than the decoder allowed to use one of those, each with the reason: none now.
DECODING_ALLOWED = {}


def _dotted(node):
    """`tf.io.decode_png` -> "tf.io.decode_png"; "" for what is not a chain of names."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _decodes(name):
    parts = name.split(".")
    return (
        parts[-1] in DECODING_NAMES
        or parts[-2:] == ["Image", "open"]
        or (parts[-1].startswith("decode_") and len(parts) > 1 and parts[-2] in ("io", "image"))
        or parts[-1] in ("decode_image", "decode_jpeg", "decode_png")
    )


def decoding_uses(path):
    """Where `path` names an image-decoding function (called or passed on), as "line: name"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute | ast.Name):
            names = [_dotted(node)]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if name and _decodes(name)]
    return found


def test_the_decoder_is_the_only_module_that_decodes_images():
    assert any("Image.open" in use for use in decoding_uses(DECODER))  # the check finds it
    others = {
        str(path.relative_to(PACKAGE)): uses
        for path in SOURCES
        if path != DECODER and (uses := decoding_uses(path))
    }
    unexplained = {path: uses for path, uses in others.items() if path not in DECODING_ALLOWED}
    assert not unexplained, (
        f"image files decoded outside {DECODER.relative_to(PACKAGE)}: {unexplained}; call "
        "data.read_image (or data.decode_images) instead"
    )
