"""The CLI's error policy: the library's own user errors are one line and exit 2; anything else is a bug
and keeps its traceback, followed by a line asking to report it."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from typer.testing import CliRunner

from spine_seg.core.errors import NotFoundError, UsageError, UserError
from spine_seg_cli import common
from spine_seg_cli.main import app


def test_user_errors_are_the_library_own_and_the_file_system():
    assert common.USER_ERRORS == (UserError, common.USER_ERRORS[1]) and issubclass(common.USER_ERRORS[1], OSError)
    assert not any(issubclass(ValueError, e) or issubclass(KeyError, e) for e in common.USER_ERRORS)
    assert issubclass(UsageError, ValueError) and issubclass(NotFoundError, KeyError)
    assert str(NotFoundError("no series '9'")) == "no series '9'"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path):
    from spine_seg import api

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(api, "inspect_studies", broken)
    res = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert res.exit_code == 1 and isinstance(res.exception, ValueError)  # not turned into "error: …", exit 2
    assert "error: an internal invariant broke" not in res.output


def test_the_bug_line_follows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: seen.append(a))
    common.report_bugs()
    common.report_bugs()  # installed once
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert len(seen) == 1 and capsys.readouterr().err.strip() == common.BUG_LINE


def test_a_user_error_is_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "missing")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.output


def _record(name: str, with_traceback: bool) -> logging.LogRecord:
    try:
        raise OSError("Truncated File Read")
    except OSError:
        exc_info = sys.exc_info() if with_traceback else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "%s: decoding failed", ("3.dcm",), exc_info)


def test_log_tracebacks_only_with_verbose():
    """Without -v a logged traceback is left out (pydicom's whole record, since spineseg names the file in a
    line of its own; the library's own records keep their one line); with -v everything is logged as it is."""
    quiet = logging.StreamHandler(io.StringIO())
    quiet.setFormatter(common.OneLineFormatter(common.LOG_FORMAT))
    quiet.addFilter(common.DropReportedTracebacks())
    for name in ("pydicom", "pydicom.pixels.decoders.base"):
        assert not quiet.filter(_record(name, True))
        assert quiet.filter(_record(name, False))  # pydicom's warnings without a traceback stay
    own = _record("spine_seg.dicom.pixels", True)
    assert quiet.filter(own)
    assert quiet.format(own) == "ERROR spine_seg.dicom.pixels: 3.dcm: decoding failed (spineseg -v shows the traceback)"
    loud = logging.Formatter(common.LOG_FORMAT).format(_record("pydicom.pixels.decoders.base", True))
    assert "Traceback (most recent call last)" in loud and "OSError: Truncated File Read" in loud
