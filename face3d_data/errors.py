"""The two error types that users see.

``InputError`` is raised for bad user input (a file that cannot be read, a field with the wrong
shape, NaNs, a wrong landmark count). Its message always names the offending file, so that a batch
run can record it in ``failures.csv`` and move on.

``ConfigError`` is raised for bad options; the command line prints it and exits with status 2.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input data, tied to the file it came from.

    Args:
        path: the file (or folder) the problem is in.
        message: what is wrong, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(ValueError):
    """A bad option or configuration value; the CLI reports it and exits with status 2."""
