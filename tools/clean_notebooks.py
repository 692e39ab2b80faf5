"""Strip outputs and normalise metadata of notebooks, so that git diffs show only source.

python tools/clean_notebooks.py notebooks/*.ipynb          # rewrite in place
python tools/clean_notebooks.py --check notebooks/*.ipynb  # exit 1 if any would change
"""

import argparse
import sys

import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
NOTEBOOK_METADATA = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
KEPT_CELL_METADATA = ("tags",)


def clean(nb):
    """Return a cleaned copy of a notebook node."""
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict(NOTEBOOK_METADATA)
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA}
        )
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None) if cell.cell_type != "markdown" else None
    return nb


def dumps(nb):
    return nbformat.writes(nb) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--check", action="store_true", help="report, do not rewrite")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        cleaned = dumps(clean(nbformat.reads(text, as_version=4)))
        if cleaned != text:
            dirty.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(cleaned)
    verb = "need cleaning (run `make format-notebooks`)" if args.check else "cleaned"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if (dirty and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
