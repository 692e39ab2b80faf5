"""What every command shares: the one-line argparse parser, the errors a user can fix and how
they are reported, and checks of the paths and numbers a command is given (run before any
work, so that a refusal leaves nothing behind)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
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


def add_skip_flag(parser, follows_run=False):
    """--skip-bad-images; `follows_run`: the command reads a run's images, and without the flag
    does as the run did (`on_error`)."""
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out image files that cannot be read (each named in one line) instead of "
        "stopping"
        + (
            "; on by itself when reading the training folder of a run that train ran with it"
            if follows_run
            else ""
        ),
    )


def on_error(args, metadata=None, folder=None):
    """`"skip"` (leave out unreadable images) with --skip-bad-images, or when `folder` (a data
    flag's value; None: $MOBILEVIT_DATA_DIR) is the training folder of a run that skipped them
    (its `metadata`): its images are then read as training read them. Else "raise"."""
    if getattr(args, "skip_bad_images", False):
        return "skip"
    if metadata is not None and trained_skipping(metadata) and is_training_folder(metadata, folder):
        return "skip"
    return "raise"


def trained_skipping(metadata):
    """Whether a run left out unreadable images: --skip-bad-images in the command its metadata
    records."""
    from mobilevit_utils.run_files import RunMetadata

    command = RunMetadata.from_dict(metadata).command or ""
    try:
        words = shlex.split(command)
    except ValueError:  # a command edited by hand: its words as written
        words = command.split()
    return "--skip-bad-images" in words


def is_training_folder(metadata, folder):
    """Whether the data `folder` (None: $MOBILEVIT_DATA_DIR) is the one the run trained on (its
    metadata's `data_dir`), whichever way it is written (relative, through a link)."""
    from mobilevit_utils import data
    from mobilevit_utils.environment import DATA_ENV
    from mobilevit_utils.run_files import RunMetadata

    recorded = RunMetadata.from_dict(metadata).data_dir
    folder = folder or os.environ.get(DATA_ENV)
    if not recorded or not folder:
        return False
    try:
        return Path(data.resolve_local_root(folder)).resolve() == Path(recorded).resolve()
    except data.DataError:  # the loader says what is wrong with it
        return False


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


def check_outside_data(out, data_dir, why):
    """Refuse an --out inside the data folder (--data-dir, else $MOBILEVIT_DATA_DIR): what is
    written there would be read as part of the data (a class folder), or change it. `why`:
    what would go wrong, for the message."""
    from mobilevit_utils.environment import DATA_ENV

    flag = "--data-dir"
    if data_dir is None and os.environ.get(DATA_ENV):
        flag, data_dir = f"${DATA_ENV}", os.environ[DATA_ENV]
    if data_dir is None:
        return
    check_input_folder(flag, data_dir)
    data = Path(data_dir).expanduser().resolve()
    if Path(out).expanduser().resolve().is_relative_to(data):
        raise CLIError(
            f"--out {out} is inside {flag} {data_dir}: {why}; choose an output folder outside "
            "the data"
        )


def check_input_folder(flag, path, what="class folders of images"):
    """Refuse a data flag naming a file (a folder is expected); a missing folder is left to the
    data loader, whose message says what the folder should hold."""
    if path and Path(path).expanduser().is_file():
        raise CLIError(
            f"{flag} {path} is a file, not a folder; pass the folder holding {what} (a .tar "
            "archive goes inside that folder)"
        )
