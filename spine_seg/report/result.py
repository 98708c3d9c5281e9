"""What ``predict_study`` returns for one study, and how it is written to disk (``result.json``).

Kept apart from :mod:`spine_seg.inference` so that readers of results (the report, tests, notebooks) need
neither torch nor nnU-Net.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spine_seg.core import geometry
from spine_seg.core.choices import SOURCE_FALLBACK, SOURCE_MODEL, SOURCE_PRIOR  # noqa: F401 (re-exported)
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
from spine_seg.core.errors import UsageError
from spine_seg.landmarks import LandmarkSet
from spine_seg.landmarks.project import StudyProjection
from spine_seg.measurements import MeasuredGrade, SpineMeasurements
from spine_seg.segmentation.predict import LabelVolume

RESULT_FORMAT = "spineseg-result"
RESULT_FORMAT_VERSION = 2  # 2: competition_rows, measurements, measured_grades; probabilities may be null
#: Where a row's probabilities came from (``StudyResult.sources``): SOURCE_* from spine_seg.core.choices.


@dataclass(frozen=True)
class CropSource:
    """Where the crop of one (condition, level) was cut: series, stack, slice and the world point."""

    condition: str
    level: str
    series_id: str
    stack: int
    instance_number: int
    xyz_lps_mm: tuple[float, float, float]
    x_px: float
    y_px: float
    distance_mm: float
    flipped: bool

    def to_dict(self) -> dict:
        return {
            "condition": self.condition,
            "level": self.level,
            "series_id": self.series_id,
            "stack": self.stack,
            "instance_number": self.instance_number,
            "xyz_lps_mm": [round(float(v), 3) for v in self.xyz_lps_mm],
            "x": round(float(self.x_px), 2),
            "y": round(float(self.y_px), 2),
            "distance_mm": round(float(self.distance_mm), 3),
            "flipped": self.flipped,
        }


@dataclass(frozen=True, eq=False)
class StudyResult:
    """One study's graded findings and everything needed to check them.

    ``submission``: the 25 competition rows (``row_id``, ``normal_mild``, ``moderate``, ``severe``; each row
    sums to 1). ``sources``: row_id → ``model`` | ``axial_fallback`` | ``prior``. ``landmarks`` and
    ``projection`` are None when no segmentation could be made (no Sagittal T2/STIR); ``segmentation`` is the
    label volume on the Sagittal T2 stack's grid. ``crops``: row_id → where its crop was cut.
    ``fallbacks``: one line per decision that replaced the normal path (what and why). ``submission`` is None
    when the bundle has no grading (the base model alone): no rows are made up. ``measurements`` and
    ``measured_grades``: :mod:`spine_seg.measurements` (None / empty without levels).
    """

    study_id: str
    folder: Path
    submission: pd.DataFrame | None
    sources: Mapping[str, str]
    landmarks: LandmarkSet | None
    projection: StudyProjection | None
    segmentation: LabelVolume | None
    segmentation_stack: Mapping[str, Any] | None  # series_id, stack, shape_kji, spacing_mm
    crops: Mapping[str, CropSource]
    series: Mapping[str, tuple[str, ...]]  # series kind → series ids in the study
    fallbacks: tuple[str, ...]
    warnings: tuple[str, ...]
    timings_s: Mapping[str, float]
    versions: Mapping[str, str]
    bundle: Mapping[str, Any] = field(default_factory=dict)
    measurements: SpineMeasurements | None = None
    measured_grades: tuple[MeasuredGrade, ...] = ()

    @property
    def has_rows(self) -> bool:
        """Whether the competition's 25 rows were produced (a grading bundle was given)."""
        return self.submission is not None

    def probabilities(self, condition: str, level: str) -> np.ndarray:
        """[normal_mild, moderate, severe] of one location."""
        if self.submission is None:
            raise UsageError(f"study {self.study_id}: no competition rows (predicted without a grading bundle)")
        row = self.submission[self.submission.row_id == f"{self.study_id}_{condition}_{level}"]
        if row.empty:
            raise KeyError(f"no row for {condition} {level}; conditions: {list(CONDITIONS)}, levels: {list(LEVELS)}")
        return row[list(SEVERITIES)].to_numpy(dtype=float)[0]

    def grade(self, condition: str, level: str) -> str:
        """The most probable severity (for display: the metric scores probabilities, not this)."""
        return SEVERITIES[int(np.argmax(self.probabilities(condition, level)))]

    def landmark_voxels(self) -> dict[str, dict[str, list[float]]]:
        """Each found level's disc and canal points as voxel indices (i, j, k) of the segmented stack."""
        if self.landmarks is None or self.segmentation is None:
            return {}
        out = {}
        for lm in self.landmarks.levels:
            out[lm.level] = {
                name: [round(float(v), 2) for v in geometry.world_to_voxel(self.segmentation.affine, xyz)]
                for name, xyz in (("disc_ijk", lm.disc_xyz), ("canal_ijk", lm.canal_xyz))
            }
        return out

    def measured_grade(self, finding: str, level: str) -> MeasuredGrade | None:
        """The measured grade of one finding at one level (``spinal_canal_stenosis``, ``disc_narrowing``,
        ``listhesis``), or None where the level was not measured."""
        if level not in LEVELS:
            raise UsageError(f"unknown level {level!r}; valid: {list(LEVELS)}")
        return next((g for g in self.measured_grades if g.finding == finding and g.site == level), None)

    def to_dict(self) -> dict:
        rows = []
        per_level: dict[str, Any] | None = None
        if self.submission is not None:
            for r in self.submission.itertuples(index=False):
                rows.append(
                    {
                        "row_id": r.row_id,
                        **{s: round(float(getattr(r, s)), 6) for s in SEVERITIES},
                        "source": self.sources.get(r.row_id, SOURCE_PRIOR),
                        "crop": self.crops[r.row_id].to_dict() if r.row_id in self.crops else None,
                    }
                )
            per_level = {
                level: {
                    c: dict(zip(SEVERITIES, (round(float(p), 6) for p in self.probabilities(c, level)), strict=True))
                    for c in CONDITIONS
                }
                for level in LEVELS
            }
        grades: dict[str, dict[str, Any]] = {}
        for g in self.measured_grades:
            grades.setdefault(g.site, {})[g.finding] = g.to_dict()
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "study_id": self.study_id,
            "folder": str(self.folder),
            "versions": dict(self.versions),
            "bundle": dict(self.bundle),
            "series": {k: list(v) for k, v in self.series.items()},
            "segmentation": dict(self.segmentation_stack) if self.segmentation_stack is not None else None,
            "landmarks": self.landmarks.to_dict() if self.landmarks is not None else None,
            "landmark_voxels": self.landmark_voxels(),
            "projection": self.projection.to_dict() if self.projection is not None else None,
            "competition_rows": self.has_rows,
            "probabilities": per_level,
            "rows": rows,
            "measurements": self.measurements.to_dict() if self.measurements is not None else None,
            "measured_grades": grades,
            "fallbacks": list(self.fallbacks),
            "warnings": list(self.warnings),
            "timings_s": {k: round(float(v), 3) for k, v in self.timings_s.items()},
        }


def submission_rows_from_result_json(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The 25 submission rows stored in a ``result.json`` (for re-assembling ``submission.csv`` on resume); none
    for a result predicted without a grading bundle."""
    if doc.get("format") != RESULT_FORMAT:
        raise UsageError(f"not a spineseg result (format {doc.get('format')!r})")
    if doc.get("competition_rows") is False:
        return pd.DataFrame(columns=["row_id", *SEVERITIES])
    return pd.DataFrame([{k: r[k] for k in ("row_id", *SEVERITIES)} for r in doc["rows"]])


__all__ = [
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "SOURCE_FALLBACK",
    "SOURCE_MODEL",
    "SOURCE_PRIOR",
    "CropSource",
    "StudyResult",
    "submission_rows_from_result_json",
]
