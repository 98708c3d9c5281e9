"""Where each crop is cut, decided from the landmarks and their projection alone: pure, no I/O, no models.

:func:`plan_crops` returns a :class:`CropPlan`: the crops to cut (condition, level, series, point, flip), the
levels whose subarticular rows need the axial fallback model, and why each row falls back. The Predictor
only carries the plan out, so the fallback policy is tested here without a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_seg.core.constants import GROUP_OF_CONDITION, SIDES, SeriesKind
from spine_seg.landmarks import LandmarkSet, disc_frame
from spine_seg.landmarks.project import StudyProjection

#: The spinal crop's centre: this fraction of the way from the disc centroid to the canal point, so the
#: crop holds the posterior disc margin and the canal (where the competition's spinal points are placed).
SPINAL_POINT_FRACTION = 0.5


#: Subarticular points: the canal point ± this much towards the patient's left/right in the disc plane.
#: The lateral recesses of study 100206310 lie 5.6–8.8 mm (mean 6.9) either side of the midline between
#: them; the phantom's ±(canal half-width − 3 mm) ≈ 7–9 mm.
SUBARTICULAR_OFFSET_MM = 7.0


#: Below this landmark confidence a level's axial crops are not trusted: the axial fallback grades it.
AXIAL_MIN_CONFIDENCE = 0.5


def subarticular_points(
    canal_xyz_lps_mm: np.ndarray, normal_lps: np.ndarray, offset_mm: float = SUBARTICULAR_OFFSET_MM
) -> dict[str, np.ndarray]:
    """Left and right lateral-recess points of a level: the canal point ± ``offset_mm`` along the patient's
    left–right axis kept in the disc plane (+x in LPS is the patient's left)."""
    _, _, left = disc_frame(normal_lps)
    c = np.asarray(canal_xyz_lps_mm, dtype=float)
    return {"left": c + offset_mm * left, "right": c - offset_mm * left}


def spinal_point(
    disc_xyz_lps_mm: np.ndarray,
    canal_xyz_lps_mm: np.ndarray,
    fraction: float = SPINAL_POINT_FRACTION,
    normal_lps: np.ndarray | None = None,
) -> np.ndarray:
    """``fraction`` of the way from the disc to the canal point; with the disc's ``normal_lps``, moved along
    the patient's left–right axis (in the disc plane) onto the canal point's sagittal plane.

    The canal point lies on the study's mid-sagittal plane, where readers mark all five spinal points on one
    slice (docs/landmarks.md); a disc centroid a few mm to one side would otherwise pull the crop half that
    way, onto the neighbouring slice (RSNA 100206310's L1/L2: slice 10, annotated 9)."""
    d, c = np.asarray(disc_xyz_lps_mm, dtype=float), np.asarray(canal_xyz_lps_mm, dtype=float)
    point = d + fraction * (c - d)
    if normal_lps is not None:
        _, _, left = disc_frame(normal_lps)
        point = point + float(np.dot(c - point, left)) * left
    return point


@dataclass(frozen=True)
class PlannedCrop:
    """One crop to cut: the row's condition and level, the series (None: the segmented Sagittal T2/STIR),
    the point in patient space (LPS mm), and whether to flip it (right-side crops look like left ones)."""

    condition: str
    level: str
    series_id: str | None
    xyz_lps_mm: np.ndarray
    flip: bool


@dataclass(frozen=True)
class CropPlan:
    """The crops to cut, in the order they are cut; the levels whose subarticular rows go to the axial
    fallback model (level → the canal point it searches around); and every fallback, as the sentence
    ``StudyResult.fallbacks`` records."""

    crops: tuple[PlannedCrop, ...] = ()
    axial_fallback: Mapping[str, np.ndarray] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()


def _axial_refusal(lm: Any, ax: Any, unsure: bool) -> str | None:
    """Why a level's subarticular rows cannot use the Axial T2 crops (None: they can)."""
    if ax is None:
        return "no Axial T2 series"
    if not ax.reached:
        return f"the Axial T2 does not reach it (nearest slice {abs(ax.plane_distance_mm):.1f} mm away)"
    if unsure:
        return "level names unsure"
    if lm.confidence < AXIAL_MIN_CONFIDENCE:
        return f"landmark confidence {lm.confidence:.2f} < {AXIAL_MIN_CONFIDENCE}"
    return None


def plan_crops(
    landmarks: LandmarkSet, projection: StudyProjection, specs: Mapping[str, Any], spinal_series_id: str | None = None
) -> CropPlan:
    """Which crops to cut for each found level, and which rows fall back (see :class:`CropPlan`).

    Per level: the spinal crop on the segmented series (``spinal_series_id``) half-way from the disc to the
    canal, on the canal point's sagittal plane; each foramen on the Sagittal T1 where the projection reached
    it (else that row from the prior); the two subarticular crops on the Axial T2 slice of the level, unless
    :func:`_axial_refusal` sends the level to the axial fallback. A condition group without a crop spec in
    ``specs`` gets no crop.
    """
    crops: list[PlannedCrop] = []
    fallbacks: list[str] = []
    axial_fallback: dict[str, np.ndarray] = {}

    def add(condition: str, level: str, series_id: str | None, xyz: np.ndarray, flip: bool) -> None:
        if specs.get(GROUP_OF_CONDITION[condition]) is not None:
            crops.append(PlannedCrop(condition, level, series_id, xyz, flip))

    for lm in landmarks.levels:
        lv = lm.level
        spinal = spinal_point(lm.disc_xyz, lm.canal_xyz, normal_lps=lm.normal)
        add("spinal_canal_stenosis", lv, spinal_series_id, spinal, False)
        for side in SIDES:
            p = projection.foramen(lv, side)
            cond = f"{side}_neural_foraminal_narrowing"
            if p is None:
                continue  # no Sagittal T1: said once in the projection's `missing`
            if not p.reached:
                fallbacks.append(
                    f"{lv} {side} foramen outside the Sagittal T1 ({abs(p.plane_distance_mm):.1f} mm "
                    f"from the nearest slice): {cond} from the training prior"
                )
                continue
            add(cond, lv, p.hit.series_id, np.asarray(p.xyz_lps_mm), side == "right")
        ax = projection.axial_at(lv)
        why = _axial_refusal(lm, ax, landmarks.unsure)
        if why is not None:
            axial_fallback[lv] = lm.canal_xyz
            fallbacks.append(f"{lv} subarticular: {why}")
            continue
        assert ax is not None  # _axial_refusal refuses a missing axial point
        for side, xyz in subarticular_points(lm.canal_centre_xyz, lm.normal).items():
            add(f"{side}_subarticular_stenosis", lv, ax.hit.series_id, xyz, side == "right")
    if projection.series_ids.get(SeriesKind.SAGITTAL_T1.value) == ():
        fallbacks.append("no Sagittal T1 series: foraminal rows from the training prior")
    return CropPlan(tuple(crops), axial_fallback, tuple(fallbacks))
