"""The library's own error types: the ones a user can fix, and nothing else.

The CLI prints these as one line and exits 2; any other exception is a bug and keeps its traceback
(see :mod:`spine_seg_cli.common`). Each stage's error derives from :class:`UserError` (``DicomError``,
``BundleError``, ``ExternalDataError`` …) so a stage never has to know how the CLI prints it.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (a bad path, id, file or setting); the message says what and how."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed; the message carries the command that installs it."""


class UsageError(UserError, ValueError):
    """A value the user gave is not valid: an option, a setting, the content of an input file.

    A ``ValueError`` too, so code that catches ``ValueError`` around a library call keeps working.
    """


class NotFoundError(UserError, KeyError):
    """Something the user named does not exist (a series, an instance, a label); a ``KeyError`` too."""

    def __str__(self) -> str:  # KeyError quotes its message; a user reads it as a sentence
        return str(self.args[0]) if self.args else ""
