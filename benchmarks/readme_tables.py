"""Results files and the README tables made from them: `write_csv` writes a results CSV
atomically; `replace_block` rewrites a generated table in the README between
`<!-- NAME:start -->` and `<!-- NAME:end -->`, so that every number there comes from a
committed results file."""

from __future__ import annotations

import csv


def write_csv(rows, path, columns):
    """Rows (dicts) to `path`, through a temporary file so that a crash never truncates it."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def replace_block(readme, name, content):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} block.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{content.strip()}\n{end}{tail}")
