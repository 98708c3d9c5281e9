"""What every ``spineseg`` command shares: which errors are the user's to fix, and how they are printed."""

from __future__ import annotations

import sys

import typer

from spine_seg.core.errors import UserError

#: Errors a user can fix, printed as one line with exit code 2 and no traceback: the library's own
#: (:class:`spine_seg.core.errors.UserError` and its subclasses: DicomError, BundleError, ExternalDataError,
#: UsageError, NotFoundError …) and the file system's (OSError: a missing path, permissions, a read-only or
#: full disk, a folder where a file belongs). Anything else is a bug: it keeps its traceback (see
#: :func:`report_bugs`). A bare ``ValueError`` or ``KeyError`` is not here on purpose.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)

#: The line after the traceback of an unexpected error.
BUG_LINE = (
    "spineseg: this is a bug, not a problem with your input; please report it to the spineseg developers "
    "with the command and the traceback above."
)


def report_bugs() -> None:
    """Make an uncaught exception print its traceback and then :data:`BUG_LINE` (exit code 1 as before)."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb) -> None:
        previous(exc_type, exc, tb)
        if not issubclass(exc_type, KeyboardInterrupt):
            print(BUG_LINE, file=sys.stderr)

    if not getattr(previous, "spineseg_reports_bugs", False):
        hook.spineseg_reports_bugs = True  # type: ignore[attr-defined]
        sys.excepthook = hook


def fail(exc: BaseException, code: int = 2) -> typer.Exit:
    """Print ``error: …`` on stderr and return the Exit to raise."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code=code)
