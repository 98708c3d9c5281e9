"""What every ``spineseg`` command shares: which errors are the user's to fix, and how they are printed."""

from __future__ import annotations

import typer

from spine_seg.dicom import DicomError
from spine_seg_external_data.registry import ExternalDataError

#: Errors a user can fix (bad path, bad id, bad file): printed as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DicomError,
    ExternalDataError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    KeyError,
    ValueError,
    OSError,  # permissions, a read-only or full disk, a folder where a file belongs: the user's to fix
)


def fail(exc: BaseException, code: int = 2) -> typer.Exit:
    """Print ``error: …`` on stderr and return the Exit to raise."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code=code)
