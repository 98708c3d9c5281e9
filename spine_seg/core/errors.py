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
