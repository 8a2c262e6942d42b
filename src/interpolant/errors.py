"""The one user-error type.

A :class:`UserError` says that what was asked for is wrong (an argument, a config key, a file, a
shape) and how to put it right; the command line prints it as one line. Any other exception is
a bug in the library and is shown with its traceback. ``UserError`` is a ``ValueError``, so
``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: a wrong argument, option, config key, shape, dtype or file."""


class WrongTypeError(UserError, TypeError):
    """An argument of the wrong type (also a ``TypeError``)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what it should be)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package that a feature needs is not installed (the message says which)."""


__all__ = ["MissingDependencyError", "MissingFileError", "UserError", "WrongTypeError"]
