"""Text in and out: CSVs in whatever encoding a user's spreadsheet saved, JSON that is always valid JSON.

Why: a series CSV saved as UTF-16 by Excel, or as latin-1 by an old tool, failed every study with a decoding
error that did not name the file; and ``json.dumps`` writes ``NaN`` for a float NaN, which no strict JSON
reader accepts. Encodings are detected (UTF-8 with or without BOM, UTF-16 with BOM or by its NUL pattern,
latin-1 as the last resort for 8-bit text) or refused naming the file; JSON goes through :func:`dumps`,
which writes non-finite floats as ``null``.
"""

from __future__ import annotations

import codecs
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from spine_seg.core.errors import UsageError


def detect_encoding(data: bytes, where: str | Path = "input") -> str:
    """The encoding of a text file's bytes; ValueError naming ``where`` for binary content."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    if data.startswith(codecs.BOM_UTF32_LE) or data.startswith(codecs.BOM_UTF32_BE):
        return "utf-32"
    sample = data[:4096]
    if len(sample) >= 2 and b"\x00" in sample:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
        raise UsageError(f"{where}: binary content (NUL bytes), not a text CSV")
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # 8-bit text that is not UTF-8: latin-1 maps every byte; refuse what looks like binary (control bytes)
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
    if controls > 0.01 * max(len(sample), 1):
        raise UsageError(f"{where}: neither UTF-8, UTF-16 nor latin-1 text (control bytes): not a text CSV")
    return "latin-1"


def read_text(path: str | Path) -> str:
    """A text file decoded with :func:`detect_encoding`; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {path}") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    enc = detect_encoding(data, path)
    try:
        return data.decode(enc)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not valid {enc} text ({exc.reason} at byte {exc.start})") from exc


def read_csv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` of a file in any encoding :func:`detect_encoding` accepts; errors name the file."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise UsageError(f"{path}: empty file, not a CSV")
    try:
        return pd.read_csv(io.StringIO(text), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path}: not a readable CSV ({first})") from exc


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf, numpy's too) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        return finite_or_none(obj.item())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity (they become ``null``): output is always valid JSON."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


__all__ = ["detect_encoding", "dumps", "finite_or_none", "read_csv", "read_text"]
