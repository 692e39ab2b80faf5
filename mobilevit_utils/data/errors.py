"""The data errors: each message is one line that says what was expected and what to do.

They are `errors.UserError`s (and `ValueError`s): the command line prints them as one line."""

from __future__ import annotations

from mobilevit_utils.errors import InvalidInputError


class DataError(InvalidInputError):
    """The data cannot be loaded; the message says what was expected and what to do."""


class DataUnavailableError(DataError):
    """Neither a local copy nor a download is available."""


class BadImageError(DataError):
    """A file could not be decoded as an image; `reason` says what is wrong with it."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason
        super().__init__(
            f"Cannot decode {path}: it {reason}; leave such files out with --skip-bad-images "
            "(Python: on_error='skip')."
        )
