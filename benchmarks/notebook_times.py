"""How long each notebook ran, read from executed copies: Jupyter stores when every code cell
started and finished (cell metadata `execution`), so the time is the first cell's start to the
last cell's end (the kernel's start-up excluded). Nothing is run here.

    python benchmarks/notebook_times.py docs/*.ipynb             # the full-mode copies readers see
    MOBILEVIT_QUICK=1 make tutorial && python benchmarks/notebook_times.py artifacts/executed/*.ipynb

notebooks/README.md cites benchmarks/results/notebook_times_full.txt (the docs/ copies, which
tests/repo/test_docs.py checks against this command) and notebook_times_quick.txt (a quick-mode
`make tutorial`, run alone on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path


def _time(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def run_seconds(notebook):
    """Seconds from the first code cell's start to the last one's reply; None if not executed."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    stamps = [c["metadata"].get("execution") for c in cells if c["cell_type"] == "code"]
    stamps = [s for s in stamps if s and "iopub.execute_input" in s and "shell.execute_reply" in s]
    if not stamps:
        return None
    return (
        _time(stamps[-1]["shell.execute_reply"]) - _time(stamps[0]["iopub.execute_input"])
    ).total_seconds()


def times(notebooks):
    """{notebook name: whole seconds} for the executed copies among `notebooks`."""
    measured = {Path(nb).stem: run_seconds(nb) for nb in sorted(notebooks)}
    return {name: round(seconds) for name, seconds in measured.items() if seconds is not None}


def report(notebooks):
    measured = times(notebooks)
    lines = [f"{name}: {seconds:,} s" for name, seconds in measured.items()]
    total = sum(measured.values())
    lines.append(f"all {len(measured)}: {total:,} s ({total / 60:.0f} min)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="executed .ipynb files")
    args = parser.parse_args(argv)
    print(report(args.notebooks))


if __name__ == "__main__":
    main()
