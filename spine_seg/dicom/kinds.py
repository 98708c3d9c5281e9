"""Which of the competition's three series kinds a series is, and why.

A series-descriptions CSV (the competition's ``*_series_descriptions.csv``) is authoritative when given.
Otherwise the kind is inferred from the slice orientation and the acquisition tags, and every clue used is
kept as evidence so a user can see why a series was called T1 or T2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spine_seg.core import geometry, textio
from spine_seg.core.constants import SeriesKind
from spine_seg.core.errors import UsageError


@dataclass(frozen=True)
class AcquisitionTags:
    """The few tags that tell T1 from T2/STIR; any may be missing (the competition strips most)."""

    series_description: str = ""
    echo_time_ms: float | None = None
    repetition_time_ms: float | None = None
    inversion_time_ms: float | None = None
    scanning_sequence: str = ""


def read_series_csv(path: str | Path) -> dict[tuple[str, str], SeriesKind]:
    """``study_id, series_id, series_description`` rows → {(study_id, series_id): kind}."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such series descriptions CSV")
    try:
        df = textio.read_csv(path, dtype=str, keep_default_na=False)  # UTF-8 ±BOM, UTF-16, latin-1
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read series descriptions CSV: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = {"study_id", "series_id", "series_description"} - set(df.columns)
    if missing:
        raise UsageError(
            f"{path}: series descriptions CSV lacks columns {sorted(missing)}; has {list(df.columns)[:10]}"
        )
    if df.empty:
        raise UsageError(f"{path}: series descriptions CSV has no rows")
    out: dict[tuple[str, str], SeriesKind] = {}
    for line, row in enumerate(df.itertuples(index=False), start=2):
        study, series = str(row.study_id).strip(), str(row.series_id).strip()
        if not study or not series:
            raise UsageError(f"{path}: line {line}: empty study_id or series_id")
        try:
            out[(study, series)] = SeriesKind.parse(row.series_description)
        except ValueError as exc:
            raise UsageError(f"{path}: study {study} series {series}: {exc} (line {line})") from exc
    return out


_T1 = re.compile(r"(?<![a-z0-9])t1", re.I)
_T2 = re.compile(r"(?<![a-z0-9])t2", re.I)
_STIR = re.compile(r"stir|tirm|\bir\b", re.I)


def infer_kind(
    iop: tuple[float, ...],
    tags: AcquisitionTags,
    listed: SeriesKind | None = None,
    csv_name: str = "series descriptions CSV",
) -> tuple[SeriesKind, tuple[str, ...], tuple[str, ...]]:
    """Return (kind, evidence, warnings)."""
    orientation = geometry.orientation_label(iop)
    obl = geometry.obliquity_deg(iop)
    evidence = [f"orientation {orientation} ({obl:.1f}° oblique)"]
    warnings: list[str] = []
    if listed is not None:
        expected = "axial" if listed is SeriesKind.AXIAL_T2 else "sagittal"
        if orientation != expected:
            warnings.append(f"{csv_name} says {listed.value!r} but the slices are {orientation}")
        return listed, (f"{csv_name}: {listed.value!r}", *evidence), tuple(warnings)

    weight: str | None = None  # "T1" or "T2"
    desc = tags.series_description
    if desc:
        if _STIR.search(desc) or _T2.search(desc):
            weight = "T2"
            evidence.append(f"SeriesDescription {desc!r} names T2/STIR")
        elif _T1.search(desc):
            weight = "T1"
            evidence.append(f"SeriesDescription {desc!r} names T1")
    if weight is None and tags.inversion_time_ms is not None and 80 <= tags.inversion_time_ms <= 300:
        weight = "T2"
        evidence.append(f"InversionTime {tags.inversion_time_ms:g} ms is a STIR fat-nulling time")
    if weight is None and tags.echo_time_ms is not None:
        if tags.echo_time_ms < 40:
            weight = "T1"
            evidence.append(f"EchoTime {tags.echo_time_ms:g} ms < 40 ms: T1-weighted")
        elif tags.echo_time_ms >= 60:
            weight = "T2"
            evidence.append(f"EchoTime {tags.echo_time_ms:g} ms ≥ 60 ms: T2-weighted")
    if weight is None and tags.repetition_time_ms is not None and tags.repetition_time_ms < 1000:
        weight = "T1"
        evidence.append(f"RepetitionTime {tags.repetition_time_ms:g} ms < 1000 ms: T1-weighted")

    if orientation == "axial":
        if weight == "T1":
            warnings.append("axial T1 series: not one of the competition's series kinds")
            return SeriesKind.UNKNOWN, tuple(evidence), tuple(warnings)
        if weight is None:
            evidence.append("no contrast tags: axial series taken as Axial T2, the only axial kind")
        return SeriesKind.AXIAL_T2, tuple(evidence), tuple(warnings)
    if orientation == "sagittal":
        if weight is None:
            warnings.append("sagittal series with no tag telling T1 from T2; give a --series-csv")
            return SeriesKind.UNKNOWN, tuple(evidence), tuple(warnings)
        kind = SeriesKind.SAGITTAL_T1 if weight == "T1" else SeriesKind.SAGITTAL_T2
        return kind, tuple(evidence), tuple(warnings)
    warnings.append(f"{orientation} series: spineseg uses only sagittal and axial series")
    return SeriesKind.UNKNOWN, tuple(evidence), tuple(warnings)


def listed_kind(table: Mapping[tuple[str, str], SeriesKind] | None, study_id: str, series_id: str) -> SeriesKind | None:
    if not table:
        return None
    return table.get((str(study_id), str(series_id)))
