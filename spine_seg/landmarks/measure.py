"""What is measured at each level, whichever mask it came from: the input check, the vertebral body
centroids, the spinal canal point, the disc width and the foramen offset, and the vote of the mask's own labels.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from numpy.typing import ArrayLike

from spine_seg.core.labels import (
    SEG_LABELS,
)
from spine_seg.landmarks.components import _Component
from spine_seg.landmarks.frame import _tuple3, _unit_columns, _voxel_half_extent, disc_frame
from spine_seg.landmarks.types import (
    CANAL_MIDLINE_MAX_SHIFT_MM,
    FORAMEN_OFFSET_PER_HALF_WIDTH,
    FORAMEN_OFFSET_RANGE_MM,
    LevelLandmark,
)


def _checked(labels: ArrayLike, affine: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels [k, j, i] holding spineseg values only, and a non-singular 4×4 affine."""
    labels = np.asarray(labels)
    affine = np.asarray(affine, dtype=float)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3-D array [k, j, i], got shape {labels.shape}")
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4×4, got {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError("affine is singular")
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ValueError("label volume holds non-integer values")
        labels = labels.astype(np.int64)
    present = set(np.unique(labels).tolist())
    unknown = present - set(SEG_LABELS.values())
    if unknown:
        raise ValueError(
            f"label volume holds values {sorted(unknown)} that are not spineseg labels; valid: {SEG_LABELS}"
            " (SPIDER masks: convert with seg_labels_from_spider)"
        )
    return labels, affine


def _shifted(level_shift: int, warnings: list[str]) -> int:
    """``level_shift`` (see ``landmarks_from_labels``), with the warning that says the names were moved."""
    if level_shift:
        warnings.append(
            f"every level named {abs(level_shift)} lower than counted from the lowest disc"
            if level_shift > 0
            else f"every level named {-level_shift} higher than counted from the lowest disc"
        )
    return level_shift


def _offset_from_labels(
    positions: list[int], mask_levels: list[int], warnings: list[str], what: str = "disc"
) -> tuple[int, bool]:
    """The shift between order and names that most disc (or vertebra) labels agree with; (offset, clear majority)."""
    votes = Counter(m - p for p, m in zip(positions, mask_levels, strict=True))
    ranked = votes.most_common()
    offset, n_best = ranked[0]
    clear = n_best > len(positions) / 2 and (len(ranked) == 1 or ranked[1][1] < n_best)
    if len(ranked) > 1:
        warnings.append(f"{what} labels vote for different level offsets {dict(votes)}; chose {offset:+d}")
    return offset, clear


def _body_centroid(
    vertebra_xyz: np.ndarray,
    disc: _Component,
    n: np.ndarray,
    post: np.ndarray,
    left: np.ndarray,
    side: int,
    neighbour: _Component | None,
    spacing: float,
) -> np.ndarray | None:
    """Centroid of vertebra voxels (any label) in the disc's cross-section, between this disc and the next.

    Restricting to the disc's footprint keeps posterior elements out, so the point is the vertebral body's
    centre whatever label the mask gave it.
    """
    if not len(vertebra_xyz):
        return None
    centroid = disc.centroid
    rel_disc = disc.xyz - centroid
    b_d, c_d = rel_disc @ post, rel_disc @ left
    b_lo, b_hi = np.percentile(b_d, [2, 98])
    c_lim = float(np.percentile(np.abs(c_d), 98))
    rel = vertebra_xyz - centroid
    a, b, c = rel @ n, rel @ post, rel @ left
    if neighbour is not None:
        reach = abs(float(np.dot(neighbour.centroid - centroid, n)))
    else:
        reach = 0.75 * spacing
    along = side * a
    sel = (along > 0) & (along < reach) & (b >= b_lo) & (b <= b_hi) & (np.abs(c) <= c_lim)
    if np.count_nonzero(sel) < max(20, 0.1 * disc.n):
        return None
    return vertebra_xyz[sel].mean(axis=0)


def _canal_point(
    canal_xyz: np.ndarray, centroid: np.ndarray, n: np.ndarray, post: np.ndarray, left: np.ndarray, slab_mm: float
) -> np.ndarray | None:
    """Centroid of the canal voxels in a slab around the disc plane, behind the disc and near the midline."""
    if not len(canal_xyz):
        return None
    rel = canal_xyz - centroid
    a, b, c = rel @ n, rel @ post, rel @ left
    sel = (np.abs(a) <= slab_mm) & (b > 0) & (b < 80.0) & (np.abs(c) < 30.0)
    if np.count_nonzero(sel) < 5:
        return None
    return canal_xyz[sel].mean(axis=0)


def _disc_half_width(
    disc: _Component, midline: np.ndarray, left: np.ndarray, lateral_column: np.ndarray, affine: np.ndarray
) -> float | None:
    """Half the disc's L–R width. A disc cut by the field of view on one side is measured on the other,
    from the midline (the canal point); cut on both sides it cannot be measured."""
    c = (disc.xyz - midline) @ left
    pad = _voxel_half_extent(affine, left)
    low_is_right = float(np.dot(lateral_column, left)) > 0  # increasing array index runs to the left
    cut_right, cut_left = disc.lateral_cut if low_is_right else disc.lateral_cut[::-1]
    if cut_right and cut_left:
        return None
    if cut_right:
        return float(c.max()) + pad
    if cut_left:
        return float(-c.min()) + pad
    return 0.5 * float(c.max() - c.min()) + pad


def _maybe3(v: np.ndarray | None) -> tuple[float, float, float] | None:
    return None if v is None else _tuple3(v)


def _foramen_offset(disc_half_width_mm: float) -> float:
    lo, hi = FORAMEN_OFFSET_RANGE_MM
    return float(np.clip(FORAMEN_OFFSET_PER_HALF_WIDTH * disc_half_width_mm, lo, hi))


def _canal_points_on_midline(drafts: list[dict], affine: np.ndarray) -> None:
    """Move the canal points measured on a canal label onto one sagittal plane of the image (in place).

    Why: a sagittal series samples the canal every 3–4.5 mm, and which parasagittal slices the network
    labels as canal at a level (lateral recesses, a slice lost to partial volume) moves that level's canal
    centroid left or right by a slice or more. Readers place the spinal-canal point on one mid-sagittal slice
    for the whole study, even when the spine leans a little in the coronal plane: in the RSNA 2024 keypoints
    (``train_label_coordinates``, 1,974 Sagittal T2 series) 78 % put all five spinal points on one slice and
    94 % within one slice of it. So each point keeps its superior–inferior and anterior–posterior place and
    takes the mean position of the study's canal points along the image's left–right axis, moving within
    its disc plane, by at most :data:`CANAL_MIDLINE_MAX_SHIFT_MM` so that it stays inside that level's canal
    (a scoliosis can carry the canal off any single plane). Points estimated without a canal label (disc
    margin, behind the bodies) stay where they are.
    """
    measured = [d for d in drafts if d["canal_source"] == "canal_label"]
    if len(measured) < 2:
        return
    columns = _unit_columns(affine)
    lateral = columns[:, int(np.argmax(np.abs(columns[0])))]  # the image axis closest to the patient's L–R
    along = np.array([float(np.dot(d["canal_xyz_lps_mm"], lateral)) for d in measured])
    # the plane nearest the study's canal points (their mean), robust to a level whose canal label strays:
    # points further than the largest shift from the median do not pull it
    near = np.abs(along - np.median(along)) <= CANAL_MIDLINE_MAX_SHIFT_MM
    if not near.any():  # e.g. two levels more than twice the largest shift apart: no plane they share
        return
    midline = float(np.mean(along[near]))
    for d, a in zip(measured, along, strict=True):
        left = disc_frame(d["normal_lps"])[2]
        cos = float(np.dot(left, lateral))
        if abs(cos) < 0.5:  # a disc plane that does not face the image's L–R axis: no shift along it
            continue
        shift = float(np.clip(midline - a, -CANAL_MIDLINE_MAX_SHIFT_MM, CANAL_MIDLINE_MAX_SHIFT_MM))
        # along the disc's own L–R axis, so the point stays in its disc plane
        d["canal_xyz_lps_mm"] = _tuple3(np.asarray(d["canal_xyz_lps_mm"], dtype=float) + shift / cos * left)
        d["canal_midline_shift_mm"] = shift / cos


def _levels_with_foramen_offset(
    drafts: list[dict],
    half_widths_mm: list[float],
    width_source: str,
    default_offset_mm: float,
    affine: np.ndarray,
) -> list[LevelLandmark]:
    """The drafts as finished landmarks: canal points on the study's midline
    (:func:`_canal_points_on_midline`) and one foramen offset shared by all levels, from the median measured
    half-width (one value per study, because a single width is quantised by the sagittal slice spacing),
    else the default."""
    _canal_points_on_midline(drafts, affine)
    if half_widths_mm:
        offset_mm, source = _foramen_offset(float(np.median(half_widths_mm))), width_source
    else:
        offset_mm, source = default_offset_mm, "default"
    return [LevelLandmark(**d, foramen_offset_mm=offset_mm, foramen_offset_source=source) for d in drafts]


class _Doubts:
    """A level's confidence as the product of its doubts, each kept with the sentence the report shows: a
    user who sees 0.42 must be able to read why."""

    def __init__(self) -> None:
        self.confidence = 1.0
        self.reasons: list[str] = []

    def lower(self, factor: float, reason: str) -> None:
        self.confidence *= factor
        self.reasons.append(reason)

    def fields(self) -> dict:
        """The ``confidence`` and ``reasons`` fields of a :class:`LevelLandmark`."""
        return {"confidence": float(np.clip(self.confidence, 0.0, 1.0)), "reasons": tuple(self.reasons)}
