"""Why a level is absent: expected outside the field of view, or inside it with nothing segmented there."""

from __future__ import annotations

import numpy as np

from spine_seg.core.constants import LEVELS
from spine_seg.landmarks.frame import _tuple3
from spine_seg.landmarks.types import LandmarkSet, LevelLandmark, MissingLevel


def _inside_field_of_view(xyz: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    """Whether a point in LPS mm lies inside the array ``[k, j, i]`` that ``affine`` places in space."""
    ijk = (xyz - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    return all(-0.5 <= ijk[m] <= shape[2 - m] - 0.5 for m in range(3))


def _expected_at(
    from_xyz: np.ndarray, steps: float, spacing: float, axis: np.ndarray, shape: tuple[int, ...], affine: np.ndarray
) -> tuple[list[float], bool]:
    """Where a structure ``steps`` disc spacings up the axis from ``from_xyz`` should lie (LPS mm, rounded for
    a message) and whether that is inside the image: it tells "not segmented" from "not in view"."""
    expected = from_xyz + steps * spacing * axis
    return np.round(expected, 1).tolist(), _inside_field_of_view(expected, shape, affine)


def _landmark_set(
    found: list[LevelLandmark],
    missing: list[MissingLevel],
    warnings: list[str],
    unsure: bool,
    anchor: str,
    axis: np.ndarray,
    spacing: float,
    source: str,
) -> LandmarkSet:
    """The finished set, the same way from discs or from vertebrae: levels in head-to-feet order."""
    return LandmarkSet(
        levels=tuple(sorted(found, key=lambda lm: LEVELS.index(lm.level))),
        missing=tuple(missing),
        warnings=tuple(warnings),
        unsure=bool(unsure),
        anchor=anchor,
        axis_superior_lps=_tuple3(axis),
        disc_spacing_mm=spacing,
        source=source,
    )


def _missing_levels(
    found: list[LevelLandmark],
    shape: tuple[int, ...],
    affine: np.ndarray,
    axis: np.ndarray,
    spacing: float,
) -> list[MissingLevel]:
    """Why each level is absent: expected outside the field of view, or inside it with no disc there."""
    missing = []
    have = {lm.level: lm for lm in found}
    for li, level in enumerate(LEVELS):
        if level in have:
            continue
        if not found:
            missing.append(MissingLevel(level, "no disc component could be assigned"))
            continue
        nearest = min(found, key=lambda lm: abs(LEVELS.index(lm.level) - li))
        steps = LEVELS.index(nearest.level) - li  # > 0: the missing level lies above
        where, inside = _expected_at(nearest.disc_xyz, steps, spacing, axis, shape, affine)
        if inside:
            reason = f"no disc component where expected (about {where} mm, inside the field of view): not segmented"
        else:
            reason = f"expected about {where} mm, outside the field of view"
        missing.append(MissingLevel(level, reason))
    return missing
