"""What every ``spineseg`` command shares: which errors are the user's to fix, and how they are printed."""

from __future__ import annotations

import logging
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


#: Loggers of libraries that log a failure spineseg then reports itself, naming the file: pydicom's pixel
#: decoders log each plugin's refusal with its traceback (``LOGGER.exception``) before the error reaches
#: :mod:`spine_seg.dicom.pixels`, which turns it into one ``PixelDataError`` line.
REPORTED_BY_SPINESEG = ("pydicom",)

#: The format of every log line on stderr.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _has_traceback(record: logging.LogRecord) -> bool:
    return bool(record.exc_info or record.exc_text or record.stack_info)


class DropReportedTracebacks(logging.Filter):
    """Without ``-v``: drop a record of :data:`REPORTED_BY_SPINESEG` that carries a traceback. Its message does
    not name the file (pydicom's is "Truncated File Read"), and spineseg's own line about the same failure does;
    a traceback on stderr reads as a crash although the batch went on."""

    def filter(self, record: logging.LogRecord) -> bool:
        reported = any(record.name == n or record.name.startswith(n + ".") for n in REPORTED_BY_SPINESEG)
        return not (reported and _has_traceback(record))


class OneLineFormatter(logging.Formatter):
    """Without ``-v``: every record as one line, its traceback left out and said to be there with ``-v``."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        line = self.formatMessage(record)
        return f"{line} (spineseg -v shows the traceback)" if _has_traceback(record) else line


def configure_logging(verbose: bool) -> None:
    """Log to stderr: warnings and up, one line each; with ``verbose`` also INFO and every traceback.

    Like :func:`logging.basicConfig` (which it calls), this does nothing when the root logger already has a
    handler: whoever set that one up (an embedding program, pytest) decides.
    """
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        handler.setFormatter(OneLineFormatter(LOG_FORMAT))
        handler.addFilter(DropReportedTracebacks())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


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
