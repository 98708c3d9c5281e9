"""Writing a study's outputs and a batch's files, atomically (temporary file + rename, :mod:`spine_seg.core.atomic`).

``result.json`` is written last, so a study whose ``result.json`` exists is finished; the output folder is
checked (and space for ``submission.csv`` and ``errors.csv`` held back) before the first study runs.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from spine_seg.core import textio
from spine_seg.core.atomic import atomic_write, atomic_write_text
from spine_seg.core.errors import UserError
from spine_seg.dicom import DicomError, Study, load_study
from spine_seg.dicom_out import DICOM_DIR, SEG_FILE, SR_FILE
from spine_seg.report.result import (
    StudyResult,
)

log = logging.getLogger(__name__)


RESULT_JSON = "result.json"


REPORT_PNG = "report.png"


SEGMENTATION_NII = "segmentation.nii.gz"


SUBMISSION_CSV = "submission.csv"


ERRORS_CSV = "errors.csv"


ERROR_COLUMNS: tuple[str, ...] = ("study", "folder", "stage", "error", "submission_rows")


#: Writes further per-study files (e.g. :func:`spine_seg.dicom_out.write_dicom_outputs`): called with the result,
#: its folder and the ingested study before ``result.json``; returns {output name: path}. A module-level function,
#: so that a Ray worker can receive it pickled.
ExtraOutputs = Callable[[StudyResult, Path, Study | None], Mapping[str, Path]]


def write_study_outputs(
    result: StudyResult,
    study_dir: Path,
    study: Study | None = None,
    report: bool = True,
    run: Mapping[str, Any] | None = None,
    extra_outputs: ExtraOutputs | None = None,
) -> dict[str, Path]:
    """``segmentation.nii.gz``, ``report.png``, what ``extra_outputs`` writes and, last, ``result.json`` (its
    presence marks the study done). A report or extra output that fails is a warning, not a failed study,
    unless the output folder itself fails (full, read-only: the OSError propagates and the study is not done).

    ``run``: the batch's resume key (bundle fingerprint and options), stored in ``result.json`` so that a
    re-run reuses the result only when it would have been made the same way.
    """
    written: dict[str, Path] = {}
    extra_warnings: list[str] = []
    if result.segmentation is not None:
        written["segmentation"] = atomic_write(study_dir / SEGMENTATION_NII, result.segmentation.save)
    if report:
        try:
            from spine_seg.report.figure import write_report

            if study is None:
                study = load_study(result.folder)
            written["report"] = write_report(study_dir / REPORT_PNG, study, result)
        except (OSError, ValueError, RuntimeError, KeyError, DicomError) as exc:
            if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
                raise  # the output folder itself fails (full, read-only): the study is not done
            extra_warnings.append(f"report.png not written: {type(exc).__name__}: {exc}")
            log.warning("%s: report.png not written: %s", result.study_id, exc)
    if extra_outputs is not None:
        try:
            written.update(extra_outputs(result, study_dir, study))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, DicomError) as exc:
            if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
                raise  # as for report.png: the output folder itself fails
            extra_warnings.append(
                f"{getattr(extra_outputs, '__name__', 'extra outputs')} failed: {type(exc).__name__}: {exc}"
            )
            log.warning("%s: extra outputs not written: %s", result.study_id, exc)
    doc = result.to_dict()
    doc["warnings"] += extra_warnings
    doc["outputs"] = {
        k: p.relative_to(study_dir).as_posix() if p.is_relative_to(study_dir) else p.name for k, p in written.items()
    }
    if run is not None:
        doc["run"] = dict(run)
    written["result"] = atomic_write_text(study_dir / RESULT_JSON, textio.dumps(doc, indent=1))
    return written


#: errno values that mean "the output folder cannot take this file" rather than "this study is odd".
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG})


class OutputFolderError(UserError, ValueError):
    """``--out`` cannot be written at all (a file, read-only, no permission, full): nothing can start."""


class OutputWriteError(RuntimeError):
    """``submission.csv`` or ``errors.csv`` could not be written at the end of a batch (per-study outputs stay)."""


def check_output_folder(out: str | Path) -> Path:
    """Refuse an ``--out`` that cannot be a writable folder, without creating anything (so a bad INPUT or
    bundle found next leaves no trace): a file, a path under a file, a read-only or unwritable parent."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out}: is a file, not a folder")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputFolderError(f"--out {out}: {probe} is a file, so the folder cannot be made")
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise OutputFolderError(f"--out {out}: {probe} is on a read-only file system")
    except OSError:  # pragma: no cover - statvfs unsupported: the write probe below decides
        pass
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputFolderError(f"--out {out}: no permission to write in {probe}")
    return out


def prepare_output_folder(out: str | Path) -> Path:
    """Make ``out`` and prove it takes a file (write, rename, delete a probe); OutputFolderError otherwise."""
    out = check_output_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = atomic_write_text(out / f".spineseg-probe-{os.getpid()}", "probe\n")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc
    return out


_RESERVE = ".spineseg-reserve"


_OUTPUT_NAMES = (RESULT_JSON, REPORT_PNG, SEGMENTATION_NII)


def _reserve_space(out: Path, n_studies: int) -> Path | None:
    """Hold back the disk space the final ``submission.csv`` and ``errors.csv`` need, so that a disk that fills
    during the batch still gets them: released just before they are written. None where it cannot be held."""
    size = 64 * 1024 + n_studies * 25 * 80 * 2 + n_studies * 1024
    path = out / _RESERVE
    try:
        with open(path, "wb") as fp:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fp.fileno(), 0, size)
            else:  # pragma: no cover - non-POSIX
                fp.write(b"\0" * size)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise OutputFolderError(
            f"--out {out}: cannot hold {size // 1024} KiB for submission.csv and errors.csv ({exc.strerror or exc})"
        ) from exc
    return path


def _remove_stale_temporaries(study_dir: Path) -> None:
    """Hidden temporaries (``.result.json.<pid>-<hex>.json`` …, ``dicom/.seg.dcm.…``) that a killed run left in a
    study's output folder: spineseg owns that folder, and a study about to be predicted again has no writer in
    flight there."""
    for folder, names in ((study_dir, _OUTPUT_NAMES), (study_dir / DICOM_DIR, (SEG_FILE, SR_FILE))):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and p.is_file() and any(p.name.startswith(f".{n}.") for n in names):
                p.unlink(missing_ok=True)


def _write_errors(out: Path, errors: Sequence[Mapping[str, str]]) -> Path | None:
    """``errors.csv`` of this run (stale ones from an earlier run are removed when nothing failed now)."""
    path = out / ERRORS_CSV
    if not errors:
        path.unlink(missing_ok=True)
        return None
    frame = pd.DataFrame(list(errors), columns=list(ERROR_COLUMNS))
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))
