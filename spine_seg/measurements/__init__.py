"""Measurements per level from a segmentation and its landmarks, and the grades a stated rule reads off them
(docs/measurements.md). They need no trained grading model: only the label volume, the landmarks and the
segmented series' own pixels."""

from __future__ import annotations

from spine_seg.measurements.measure import measure_spine, structure_classes
from spine_seg.measurements.types import (
    CanalProfile,
    MeasuredGrade,
    Measurement,
    SiteMeasurements,
    SpineMeasurements,
)

__all__ = [
    "CanalProfile",
    "MeasuredGrade",
    "Measurement",
    "SiteMeasurements",
    "SpineMeasurements",
    "measure_spine",
    "structure_classes",
]
