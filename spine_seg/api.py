"""The Python API under the CLI: every command is a few lines over one of these functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spine_seg.dicom import Series, SliceHit, Study, scan_folder


def inspect_studies(path: str | Path, series_csv: str | Path | None = None) -> list[Study]:
    """Scan a DICOM folder (one study, or a folder of studies) into typed studies."""
    return scan_folder(path, series_csv)


def inspect_report(studies: Sequence[Study]) -> dict:
    """The JSON document of ``spineseg inspect --json``."""
    return {"studies": [s.summary() for s in studies]}


@dataclass(frozen=True)
class LocateTarget:
    kind: str
    hit: SliceHit

    def to_dict(self) -> dict:
        return {**self.hit.to_dict(), "kind": self.kind}


@dataclass(frozen=True)
class LocateResult:
    """A pixel of one image taken to patient space and to the nearest slice of every other series."""

    study_id: str
    source_series_id: str
    source_instance_number: int
    xyz_lps_mm: np.ndarray
    targets: tuple[LocateTarget, ...]

    def to_dict(self) -> dict:
        return {
            "study_id": self.study_id,
            "source": {"series_id": self.source_series_id, "instance_number": self.source_instance_number},
            "world_lps_mm": [round(float(v), 3) for v in self.xyz_lps_mm],
            "targets": [t.to_dict() for t in self.targets],
        }


def find_series(studies: Sequence[Study], series_id: str) -> tuple[Study, Series]:
    """The study and series with this id; several studies may be scanned together."""
    for study in studies:
        for series in study.series:
            if series.series_id == str(series_id):
                return study, series
    valid = [s.series_id for st in studies for s in st.series]
    raise KeyError(f"no series {series_id!r}; valid: {valid}")


def locate(
    studies: Sequence[Study] | str | Path,
    series_id: str,
    instance_number: int,
    x_px: float,
    y_px: float,
    series_csv: str | Path | None = None,
) -> LocateResult:
    """Cross-reference a pixel (series, instance_number, x, y) into every other series of its study."""
    if isinstance(studies, (str, Path)):
        studies = scan_folder(studies, series_csv)
    study, source = find_series(studies, series_id)
    xyz = source.pixel_to_world(int(instance_number), float(x_px), float(y_px))
    targets = tuple(
        LocateTarget(series.kind.value, series.locate(xyz)) for series in study.series if series.series_id != source.series_id
    )
    return LocateResult(study.study_id, source.series_id, int(instance_number), xyz, targets)
