"""Command line: `python -m mobilevit_utils {train,evaluate,predict,export} ...` (also installed
as `mobilevit`).

Errors a user can fix (missing data, bad arguments, unwritable folders, a model's metadata that
does not fit it) print one line and exit with status 2 (their traceback with
MOBILEVIT_VERBOSE=1); any other exception is a bug and prints its traceback. One module per
command; `common` holds what they share.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mobilevit_utils.cli import evaluate, export, predict, train
from mobilevit_utils.cli.common import EXIT_USAGE, CLIError, OneLineParser, run_handler
from mobilevit_utils.cli.common import show_library_warnings as _show_library_warnings
from mobilevit_utils.cli.train import train_command, train_overrides

__all__ = [
    "EXIT_USAGE",
    "CLIError",
    "OneLineParser",
    "build_parser",
    "main",
    "program_name",
    "train_command",
    "train_overrides",
]


def program_name():
    """How the user ran this: `mobilevit` (the installed command) or `python -m mobilevit_utils`,
    so that usage lines and errors name what they typed."""
    invoked = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""  # mobilevit.exe too
    return "mobilevit" if invoked == "mobilevit" else "python -m mobilevit_utils"


def build_parser():
    parser = OneLineParser(
        prog=program_name(),
        description="MobileViT for Keras 3: train, evaluate, predict and export image classifiers.",
        epilog="Set KERAS_BACKEND=jax|torch|tensorflow to choose the backend.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, evaluate, predict, export):
        command.add_parser(sub)
    return parser


def main(argv=None):
    """Run one command (`argv`: its words, default sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    _show_library_warnings()
    from mobilevit_utils import environment

    environment.start_backend_quietly()
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
