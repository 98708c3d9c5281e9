"""Landmarks from points (competition keypoints, truth files): no mask, the points are the evidence."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from spine_seg.core.constants import LEVELS
from spine_seg.core.errors import UsageError
from spine_seg.landmarks.frame import _fit_axis, _tuple3, _unit
from spine_seg.landmarks.types import LandmarkSet, LevelLandmark, MissingLevel


def landmarks_from_points(
    disc_xyz_lps_mm: Mapping[str, ArrayLike],
    canal_xyz_lps_mm: Mapping[str, ArrayLike] | None = None,
    *,
    source: str = "keypoints",
    foramen_offset_mm: float | None = None,
) -> LandmarkSet:
    """A :class:`LandmarkSet` from one point per level (e.g. the competition's spinal keypoints).

    The disc normals follow the curve through the points (central differences), which is what projection
    needs; without separate canal points the disc point doubles as the canal point (the spinal keypoint
    already sits at the back of the disc, in the canal).
    """
    for level in list(disc_xyz_lps_mm) + list(canal_xyz_lps_mm or {}):
        if level not in LEVELS:
            raise UsageError(f"unknown level {level!r}; valid: {list(LEVELS)}")
    order = [lv for lv in LEVELS if lv in disc_xyz_lps_mm]
    if not order:
        raise UsageError(f"no points given; expected some of {list(LEVELS)}")
    pts = np.array([np.asarray(disc_xyz_lps_mm[lv], dtype=float).reshape(3) for lv in order])
    axis = _fit_axis(pts)
    if axis is None:
        axis = np.array([0.0, 0.0, 1.0])
    if axis[2] < 0:
        axis = -axis
    found = []
    for idx, level in enumerate(order):
        if len(order) >= 2:
            hi = pts[max(idx - 1, 0)]
            lo = pts[min(idx + 1, len(order) - 1)]
            tangent = _unit(hi - lo)
            if np.dot(tangent, axis) < 0:
                tangent = -tangent
        else:
            tangent = axis
        canal = canal_xyz_lps_mm[level] if canal_xyz_lps_mm and level in canal_xyz_lps_mm else pts[idx]
        found.append(
            LevelLandmark(
                level=level,
                xyz_lps_mm=_tuple3(pts[idx]),
                normal_lps=_tuple3(tangent),
                canal_xyz_lps_mm=_tuple3(canal),
                canal_source="keypoint",
                foramen_offset_mm=foramen_offset_mm,
                foramen_offset_source="given" if foramen_offset_mm is not None else "default",
            )
        )
    missing = tuple(MissingLevel(lv, f"no {source} point") for lv in LEVELS if lv not in disc_xyz_lps_mm)
    d = [float(np.linalg.norm(a - b)) for a, b in zip(pts, pts[1:], strict=False)]
    return LandmarkSet(
        levels=tuple(found),
        missing=missing,
        warnings=(),
        unsure=False,
        anchor="keypoints",
        axis_superior_lps=_tuple3(axis),
        disc_spacing_mm=float(np.median(d)) if d else None,
        source=source,
    )
