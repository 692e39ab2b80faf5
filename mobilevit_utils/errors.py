"""Errors that the person running the code can fix: a missing or damaged input file, a model's
metadata that does not fit it, an option that makes no sense, no network or a missing package.

Each subclasses `UserError` and the built-in exception a caller would expect (`ValueError`,
`FileNotFoundError`, ...), so code catching the built-in one keeps working. The command line
prints a `UserError`'s message as one line and exits with status 2; any other exception is a
bug and shows its traceback. Raise these only for problems in what the user supplied.
"""


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong and what to do."""


class InvalidInputError(UserError, ValueError):
    """A value, file or combination of settings the user supplied cannot be used."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class ModelFileError(InvalidInputError):
    """A model file cannot be loaded (a folder, not a model, damaged or of another library)."""


class SidecarError(ModelFileError):
    """A model's metadata file (a .tflite's `<name>.json`, a run's metadata.json) is not valid
    JSON, lacks a key, or does not fit the model; the message names the file."""


class OfflineError(UserError, ConnectionError):
    """Something to download cannot be reached (no internet)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package is needed; the message says what to install."""
