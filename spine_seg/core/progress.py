"""Progress bars only where someone watches them.

A bar redraws itself many times a second; written to a log file (``bash scripts/demo.sh > log``) that is
thousands of lines. So bars are drawn only when the stream is a terminal; elsewhere the callers print one
line per study or per epoch instead.
"""

from __future__ import annotations

import sys
from typing import TextIO


def bars_enabled(requested: bool = True, stream: TextIO | None = None) -> bool:
    """Whether to draw a progress bar: asked for, and ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(requested and isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False
