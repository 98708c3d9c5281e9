"""Header values parsed strictly, where they are read: a tag that is damaged names itself and its value.

Why a module of its own: pydicom hands back whatever the file holds (``'A1'`` for an IS, ``inf`` or ``nan``
for a DS, three values where two belong) and Python arithmetic lets most of it through, so the damage
surfaced deep in resampling or in the model as "cannot convert float NaN to integer". Every geometry tag is
checked here (finite; spacing within :data:`spine_seg.core.geometry.SPACING_RANGE_MM`; orientation unit and
orthogonal; positions finite) and a failure is a :class:`TagError` whose message is ``Tag = value: problem``;
the scanner skips that one file with that line.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from pydicom import config as pydicom_config

from spine_seg.core import geometry
from spine_seg.core.errors import UserError

#: Rows and Columns beyond this are not an MR slice (and would make a multi-gigabyte array).
MAX_MATRIX = 8192


class TagError(UserError, ValueError):
    """One tag whose value spineseg cannot use; the message reads ``Tag = 'value': problem``."""

    def __init__(self, tag: str, value: Any, problem: str):
        super().__init__(f"{tag} = {_show(value)}: {problem}")
        self.tag, self.value, self.problem = tag, value, problem


@contextlib.contextmanager
def lenient_reading() -> Iterator[None]:
    """pydicom keeps invalid values as they are, silently, while a header is read and parsed here: its own
    validation would warn (and log) once per bad value and per access, and :class:`TagError` says it once."""
    before = pydicom_config.settings.reading_validation_mode
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom_config.settings.reading_validation_mode = before


def _show(value: Any) -> str:
    """A short, printable rendering of a raw tag value (at most 60 characters)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        try:
            value = "\\".join(str(v) for v in value)
        except TypeError:
            value = str(value)
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "…'"


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return [v for v in value.split("\\")] if value.strip() else []
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def parse_number(value: Any, tag: str) -> float:
    """One DS/IS/FD value as a finite float; raises :class:`TagError` naming the tag and the value."""
    try:
        x = float(str(value).strip()) if isinstance(value, (str, bytes)) else float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TagError(tag, value, "not a number") from exc
    if not math.isfinite(x):
        raise TagError(tag, value, "not finite")
    return x


def parse_numbers(value: Any, n: int, tag: str) -> tuple[float, ...]:
    """A multi-valued DS (``a\\b\\c``) as exactly ``n`` finite floats."""
    items = _items(value)
    if len(items) != n:
        raise TagError(tag, value, f"{len(items)} values, {n} expected")
    out = []
    for item in items:
        try:
            out.append(parse_number(item, tag))
        except TagError as exc:
            raise TagError(tag, value, exc.problem) from exc
    return tuple(out)


def parse_optional_number(value: Any, tag: str) -> float | None:
    """An optional DS: None when absent or blank; a present but unusable value raises :class:`TagError`."""
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    items = _items(value)
    if len(items) != 1:
        raise TagError(tag, value, f"{len(items)} values, 1 expected")
    return parse_number(items[0], tag)


def parse_int(value: Any, tag: str, lo: int | None = None, hi: int | None = None) -> int:
    """An IS/US value as an int within [lo, hi]; ``'12'``, ``' 12 '`` and ``'12.0'`` read as 12, ``'A1'`` does not."""
    x = parse_number(value, tag)
    if x != int(x):
        raise TagError(tag, value, "not an integer")
    i = int(x)
    if lo is not None and hi is not None and not lo <= i <= hi:
        raise TagError(tag, value, f"outside {lo}..{hi}")
    if lo is not None and i < lo:
        raise TagError(tag, value, f"below {lo}")
    if hi is not None and i > hi:
        raise TagError(tag, value, f"above {hi}")
    return i


def parse_instance_number(value: Any) -> int | None:
    """InstanceNumber as an int, or None when absent or unusable (the slice is then ordered by position)."""
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    try:
        return parse_int(value, "InstanceNumber", -(2**31), 2**31 - 1)
    except TagError:
        return None


def geometry_tags(ds: Any) -> tuple[tuple[float, float, float], tuple[float, ...], tuple[float, float], int, int]:
    """(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows, Columns), each checked; raises
    :class:`TagError` for the first tag that is damaged or implausible."""
    with warnings.catch_warnings():  # pydicom warns on every invalid DS/IS; the TagError says it once
        warnings.simplefilter("ignore")
        raw = {
            t: ds.get(t) for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
        }
    ipp = parse_numbers(raw["ImagePositionPatient"], 3, "ImagePositionPatient")
    problem = geometry.position_problem(ipp)
    if problem:
        raise TagError("ImagePositionPatient", raw["ImagePositionPatient"], problem.split(": ", 1)[-1])
    iop = parse_numbers(raw["ImageOrientationPatient"], 6, "ImageOrientationPatient")
    problem = geometry.iop_problem(iop)
    if problem:
        raise TagError("ImageOrientationPatient", raw["ImageOrientationPatient"], problem.split(": ", 1)[-1])
    spacing = parse_numbers(raw["PixelSpacing"], 2, "PixelSpacing")
    problem = geometry.spacing_problem(spacing)
    if problem:
        raise TagError("PixelSpacing", raw["PixelSpacing"], problem.split(": ", 1)[-1])
    rows = parse_int(raw["Rows"], "Rows", 1, MAX_MATRIX)
    columns = parse_int(raw["Columns"], "Columns", 1, MAX_MATRIX)
    return ipp, iop, spacing, rows, columns  # type: ignore[return-value]


__all__ = [
    "MAX_MATRIX",
    "TagError",
    "geometry_tags",
    "lenient_reading",
    "parse_instance_number",
    "parse_int",
    "parse_number",
    "parse_numbers",
    "parse_optional_number",
]
