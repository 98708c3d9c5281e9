"""Progress bars only on a terminal; in a log, one line per study instead of thousands of redraws."""

from __future__ import annotations

import io

from spine_seg.core.progress import bars_enabled


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal():
    assert bars_enabled(True, _Tty()) and not bars_enabled(False, _Tty())
    assert not bars_enabled(True, io.StringIO())
    closed = io.StringIO()
    closed.close()  # isatty() on a closed stream raises ValueError
    assert not bars_enabled(True, closed)


def test_synth_in_a_log_writes_one_line_per_study(tmp_path):
    from typer.testing import CliRunner

    from spine_seg_cli.main import app

    res = CliRunner().invoke(
        app, ["synth", "--studies", "2", "--out", str(tmp_path / "c"), "--seed", "4", "--no-spider"]
    )
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("synth [")]
    assert len(lines) == 2 and lines[-1].startswith("synth [2/2]")
    assert "\r" not in res.stderr
