"""Rewrite a generated table in the README between `<!-- NAME:start -->` and `<!-- NAME:end -->`,
so that every number there comes from a committed results file."""

from __future__ import annotations


def replace_block(readme, name, content):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} block.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{content.strip()}\n{end}{tail}")
