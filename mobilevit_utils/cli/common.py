"""What every command shares: the one-line argparse parser, the errors a user can fix and how
they are reported, and checks of the paths and numbers a command is given (run before any
work, so that a refusal leaves nothing behind)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mobilevit_utils.errors import UserError

EXIT_USAGE = 2  # a user error, printed as one line
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CLIError(UserError):
    """A problem the user can fix, found by the command line itself; printed as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors in one line, with where to look, instead of the usage block."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def user_errors():
    """The exceptions that are the user's to fix, printed as one line: `errors.UserError` (this
    module's `CLIError` included) and the data's and training's own. Anything else is a bug and
    keeps its traceback."""
    from mobilevit_utils import data, training

    return (UserError, data.DataError, training.RunExistsError)


class _PlainStderr(logging.Handler):
    """The message alone, on whatever sys.stderr is at the time."""

    def emit(self, record):
        print(record.getMessage(), file=sys.stderr)


def show_library_warnings():
    """The library's warnings (a skipped image file, say), one plain line each on stderr."""
    logger = logging.getLogger("mobilevit_utils")
    if not logger.handlers:
        logger.addHandler(_PlainStderr())
        logger.propagate = False


def run_handler(args):
    """Run the parsed command; its exit status. A user error is one line on stderr (status 2;
    its traceback with MOBILEVIT_VERBOSE=1), Ctrl-C says how to continue (status 130)."""
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        resume = "; rerun with --resume to continue from the last finished epoch"
        print(f"interrupted{resume if args.command == 'train' else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except user_errors() as error:
        if os.environ.get("MOBILEVIT_VERBOSE"):
            raise
        message = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


# --------------------------------------------------------------------------------------------
# Flags and checks shared by several commands


def add_skip_flag(parser):
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out image files that cannot be read (each named in one line) instead of "
        "stopping",
    )


def on_error(args):
    return "skip" if getattr(args, "skip_bad_images", False) else "raise"


def check_positive(name, value, minimum=1):
    if value is not None and value < minimum:
        raise CLIError(f"{name} must be at least {minimum}, got {value}")


def check_output_folder(flag, path):
    """Refuse, before any work, an output folder that is a file, sits inside one, or would be
    created where this user cannot write."""
    path = Path(path).expanduser()
    for part in (path, *path.parents):
        if not part.exists():
            continue
        if not part.is_dir():
            raise CLIError(f"{flag} {path}: {part} is a file; choose a folder path")
        if not os.access(part, os.W_OK | os.X_OK):
            raise CLIError(
                f"{flag} {path}: cannot write in {part} (permission denied); choose another folder"
            )
        return


def check_input_folder(flag, path, what="class folders of images"):
    """Refuse a data flag naming a file (a folder is expected); a missing folder is left to the
    data loader, whose message says what the folder should hold."""
    if path and Path(path).expanduser().is_file():
        raise CLIError(
            f"{flag} {path} is a file, not a folder; pass the folder holding {what} (a .tar "
            "archive goes inside that folder)"
        )
