"""The Python API under the CLI: every command is a few lines over one of these functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spine_seg.core.errors import NotFoundError, UsageError
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
    warnings: tuple[str, ...] = ()  # e.g. the source pixel lies outside its image

    def to_dict(self) -> dict:
        source: dict = {"series_id": self.source_series_id, "instance_number": self.source_instance_number}
        doc = {
            "study_id": self.study_id,
            "source": source,
            "world_lps_mm": [round(float(v), 3) for v in self.xyz_lps_mm],
            "targets": [t.to_dict() for t in self.targets],
        }
        if self.warnings:  # only then: the document of a pixel inside its image is unchanged
            source["inside_image"] = False
            doc["warnings"] = list(self.warnings)
        return doc


def find_series(studies: Sequence[Study], series_id: str) -> tuple[Study, Series]:
    """The study and series with this id; several studies may be scanned together."""
    for study in studies:
        for series in study.series:
            if series.series_id == str(series_id):
                return study, series
    valid = [s.series_id for st in studies for s in st.series]
    raise NotFoundError(f"no series {series_id!r}; valid: {valid}")


def locate(
    studies: Sequence[Study] | str | Path,
    series_id: str,
    instance_number: int,
    x_px: float,
    y_px: float,
    series_csv: str | Path | None = None,
) -> LocateResult:
    """Cross-reference a pixel (series, instance_number, x, y) into every other series of its study.

    A non-finite x or y is refused (ValueError) rather than printed as ``LPS (nan, nan, nan)``; a pixel outside
    its image is allowed (a landmark can be) but said in ``warnings``.
    """
    for name, v in (("--x", x_px), ("--y", y_px)):
        if not math.isfinite(float(v)):
            raise UsageError(f"{name} {v}: not a finite pixel coordinate")
    if isinstance(studies, (str, Path)):
        studies = scan_folder(studies, series_csv)
    study, source = find_series(studies, series_id)
    stack, k = source.find_instance(int(instance_number))
    sl = stack.slices[k]
    warnings: list[str] = []
    if not (-0.5 <= float(x_px) <= sl.columns - 0.5 and -0.5 <= float(y_px) <= sl.rows - 0.5):
        warnings.append(
            f"pixel ({float(x_px):g}, {float(y_px):g}) lies outside instance {int(instance_number)}'s "
            f"{sl.columns}×{sl.rows} image (x 0..{sl.columns - 1}, y 0..{sl.rows - 1})"
        )
    xyz = sl.pixel_to_world(float(x_px), float(y_px))
    targets = tuple(
        LocateTarget(series.kind.value, series.locate(xyz))
        for series in study.series
        if series.series_id != source.series_id
    )
    return LocateResult(study.study_id, source.series_id, int(instance_number), xyz, targets, tuple(warnings))
