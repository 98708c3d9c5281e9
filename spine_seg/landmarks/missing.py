"""Why a level is absent: expected outside the field of view, or inside it with nothing segmented there."""

from __future__ import annotations

import numpy as np

from spine_seg.core.constants import LEVELS
from spine_seg.landmarks.types import LevelLandmark, MissingLevel


def _inside_field_of_view(xyz: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    """Whether a point in LPS mm lies inside the array ``[k, j, i]`` that ``affine`` places in space."""
    ijk = (xyz - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    return all(-0.5 <= ijk[m] <= shape[2 - m] - 0.5 for m in range(3))


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
        expected = nearest.disc_xyz + steps * spacing * axis
        inside = _inside_field_of_view(expected, shape, affine)
        where = np.round(expected, 1).tolist()
        if inside:
            reason = f"no disc component where expected (about {where} mm, inside the field of view): not segmented"
        else:
            reason = f"expected about {where} mm, outside the field of view"
        missing.append(MissingLevel(level, reason))
    return missing
