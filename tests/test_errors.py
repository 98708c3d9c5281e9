"""The CLI's error policy: the library's own user errors are one line and exit 2; anything else is a bug
and keeps its traceback, followed by a line asking to report it."""

from __future__ import annotations

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
