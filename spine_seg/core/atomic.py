"""Atomic file writes: a reader, or a run killed half-way, never sees half a file.

Everything ``predict`` writes goes through here: the content goes to a hidden temporary file in the target's
folder (same file system, so the rename is atomic) and is renamed onto the target only once complete; on any
failure the temporary file is removed and an earlier version of the target is left as it was.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name next to ``path`` that keeps its suffixes (``.nii.gz``, ``.png``): writers such
    as SimpleITK choose the format from them. Not ``mkstemp``: it makes files 0600, and outputs should get
    the permissions the umask gives any other file of the run."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{''.join(path.suffixes)}")


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then rename ``tmp`` onto ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


__all__ = ["atomic_write", "atomic_write_text", "temporary_sibling"]
