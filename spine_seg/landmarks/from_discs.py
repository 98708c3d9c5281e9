"""Landmarks from a mask with disc labels (:func:`landmarks_from_labels`): order the discs along the spine,
anchor the names on the sacrum (or the mask's own labels, then ``unsure``), and measure each level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from spine_seg.core.constants import LEVELS
from spine_seg.landmarks.components import (
    _Component,
    _components,
    _drop_small,
    _merge,
    _name_of,
    _steps_along,
    _typical_spacing,
    _voxels_xyz,
)
from spine_seg.landmarks.frame import _disc_normal, _fit_axis, _tuple3, _unit, _unit_columns, disc_frame
from spine_seg.landmarks.from_vertebrae import _from_vertebrae
from spine_seg.landmarks.measure import (
    _body_centroid,
    _canal_point,
    _checked,
    _disc_half_width,
    _Doubts,
    _levels_with_foramen_offset,
    _maybe3,
    _offset_from_labels,
    _shifted,
)
from spine_seg.landmarks.missing import _landmark_set, _missing_levels
from spine_seg.landmarks.types import (
    CANAL_BEHIND_BODY_MM,
    CANAL_LABEL,
    DEFAULT_FORAMEN_OFFSET_MM,
    DISC_LABELS,
    FRAGMENT_FRACTION,
    LEVEL_OF_DISC_LABEL,
    SACRUM_GAP_CUT,
    SACRUM_GAP_DOUBT,
    SACRUM_LABEL,
    VERTEBRA_LABELS,
    LandmarkSet,
    MissingLevel,
)


def landmarks_from_labels(
    labels: np.ndarray,
    affine: ArrayLike,
    *,
    canal_slab_mm: float = 3.0,
    default_foramen_offset_mm: float = DEFAULT_FORAMEN_OFFSET_MM,
    level_shift: int = 0,
) -> LandmarkSet:
    """Level landmarks from a spineseg label volume ``labels[k, j, i]`` with its voxel → LPS ``affine``.

    Level names come from the sacrum and the order of the discs along the spine, not from the label ids
    (see the module docstring); the labels only break the tie when there is no sacrum, and then the result
    is ``unsure``. A mask without disc components but with two or more of L1–L5 goes to
    :func:`landmarks_from_vertebrae` (``source="vertebrae"``).

    ``level_shift`` names every disc that many levels lower than the count says: for a caller with evidence
    that the count started too low (the lowest "l5_s1" is a remnant disc inside the sacrum, see
    :mod:`spine_seg.landmarks.structures`). Shifting here rather than renaming afterwards keeps a disc that
    the first count put above l1_l2: it is l1_l2 once the names move down.

    Long on purpose: the stages above run in order over one set of components and one warnings list; each
    is a function of its own, and this body only threads their results.
    """
    labels, affine = _checked(labels, affine)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    # the array axis closest to the patient's L–R axis: a disc touching its ends is cut laterally
    lateral_axis = 2 - int(np.argmax(np.abs(_unit_columns(affine)[0])))  # affine column m ↔ array axis 2 - m

    warnings: list[str] = []
    all_discs = _components(labels, DISC_LABELS, affine, lateral_axis)
    discs = _drop_small(all_discs, voxel_mm3, "disc", warnings)
    small_discs = [c for c in all_discs if not any(c is d for d in discs)]
    vertebrae = {
        value: _drop_small(_components(labels, (value,), affine, lateral_axis), voxel_mm3, _name_of(value), warnings)
        for value in VERTEBRA_LABELS
    }
    if not discs:
        if sum(bool(vertebrae[v]) for v in VERTEBRA_LABELS[:5]) >= 2:
            # a vertebra-only mask (MyoSegmenTUM): the discs lie between the bodies
            warnings.append("no disc component in the mask: discs inferred from the vertebral bodies")
            return _from_vertebrae(
                labels,
                affine,
                vertebrae,
                warnings,
                canal_slab_mm=canal_slab_mm,
                canal_behind_body_mm=CANAL_BEHIND_BODY_MM,
                default_foramen_offset_mm=default_foramen_offset_mm,
                level_shift=level_shift,
            )
        reason = "no disc component in the mask"
        return LandmarkSet((), tuple(MissingLevel(lv, reason) for lv in LEVELS), tuple(warnings), True, "none")

    axis, origin = _spine_axis(discs, vertebrae, warnings)
    groups, merged, spacing, positions = _order_discs(discs, axis, origin, warnings)
    t = [float(np.dot(g.centroid - origin, axis)) for g in groups]
    mask_levels = [LEVELS.index(LEVEL_OF_DISC_LABEL[g.majority()[0]]) for g in groups]
    small_t = [float(np.dot(c.centroid - origin, axis)) for c in small_discs]
    anchor, offset, unsure = _anchor_on_sacrum(
        vertebrae[SACRUM_LABEL],
        groups[int(np.argmin(t))],
        t,
        positions,
        axis,
        origin,
        spacing,
        warnings,
        small_t=small_t,
    )
    if anchor != "sacrum":
        offset, vote_ok = _offset_from_labels(positions, mask_levels, warnings)
        anchor, unsure = "labels", True
        if not vote_ok:
            warnings.append("the mask's disc labels disagree about the offset: level names are a guess")
    offset += _shifted(level_shift, warnings)
    level_index = [p + offset for p in positions]
    _check_mask_labels(mask_levels, warnings)

    vertebra_xyz, _ = _voxels_xyz(labels, np.isin(labels, VERTEBRA_LABELS), affine)
    canal_xyz, _ = _voxels_xyz(labels, labels == CANAL_LABEL, affine)
    lateral_column = affine[:3, 2 - lateral_axis]
    ref_volume = float(np.median([g.n for g in groups]))
    drafts: list[dict] = []
    for gi, g in enumerate(groups):
        li = level_index[gi]
        if not 0 <= li < len(LEVELS):
            where = "above l1_l2" if li < 0 else "below l5_s1"
            warnings.append(f"disc component at {np.round(g.centroid, 1).tolist()} mm lies {where}: ignored")
            continue
        above = groups[gi - 1] if gi > 0 and level_index[gi - 1] == li - 1 else None
        below = groups[gi + 1] if gi + 1 < len(groups) and level_index[gi + 1] == li + 1 else None
        drafts.append(
            _draft_level(
                LEVELS[li],
                g,
                axis,
                above,
                below,
                spacing,
                vertebra_xyz,
                canal_xyz,
                canal_slab_mm,
                anchor,
                unsure,
                merged[gi],
                ref_volume,
                voxel_mm3,
                lateral_column,
                affine,
            )
        )

    # the foramen offset: from the median half-width of the discs that can be measured. One width per
    # study, because a single disc's width is quantised by the sagittal slice spacing (3–4.5 mm)
    measured = [w for w in (d.pop("_half_width") for d in drafts) if w is not None]
    found = _levels_with_foramen_offset(drafts, measured, "disc_width", default_foramen_offset_mm, affine)
    found.sort(key=lambda lm: LEVELS.index(lm.level))  # a tie in _missing_levels' nearest goes to the upper
    missing = _missing_levels(found, labels.shape, affine, axis, spacing)
    return _landmark_set(found, missing, warnings, unsure, anchor, axis, spacing, "mask")


def _spine_axis(
    discs: list[_Component], vertebrae: dict[int, list[_Component]], warnings: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(unit axis pointing to the patient's head, a point on it), fitted through centroids in patient space.

    Disc centroids alone when there are three or more (vertebra labels carry posterior elements that sit
    off the axis); otherwise the lumbar vertebrae help; with one structure, the disc normals.
    """
    points = np.array([c.centroid for c in discs])
    if len(discs) < 3:
        lumbar = [c.centroid for v in VERTEBRA_LABELS[:5] for c in vertebrae[v]]
        points = np.array([*points, *lumbar])
    axis = _fit_axis(points)
    if axis is None:
        normals = [_disc_normal(c.xyz, np.array([0.0, 0.0, 1.0]))[0] for c in discs]
        axis = _unit(np.mean(normals, axis=0))
        warnings.append("too few structures to fit the spine axis: using the disc normals")
    origin = points.mean(axis=0)
    if abs(axis[2]) < 0.3:
        # the patient's S–I axis cannot orient it: the sacrum, when there is one, is at the feet
        warnings.append(
            f"the spine axis {np.round(axis, 2).tolist()} is nearly perpendicular to the patient's S–I axis"
        )
        sacra = vertebrae[SACRUM_LABEL]
        if sacra and np.dot(np.mean([c.centroid for c in sacra], axis=0) - origin, axis) > 0:
            axis = -axis
    elif axis[2] < 0:
        axis = -axis
    return axis, origin


def _order_discs(
    discs: list[_Component], axis: np.ndarray, origin: np.ndarray, warnings: list[str]
) -> tuple[list[_Component], list[bool], float, list[int]]:
    """Discs from head to feet, fragments of one disc merged, and each disc's position counting gaps.

    Returns (discs, merged flags, typical disc-to-disc spacing in mm, positions): positions step by one
    between neighbours and by n + 1 where n discs are missing in between.
    """
    discs = sorted(discs, key=lambda c: -float(np.dot(c.centroid - origin, axis)))
    raw = [float(np.linalg.norm(a.centroid - b.centroid)) for a, b in zip(discs, discs[1:], strict=False)]
    spacing = _typical_spacing([d for d in raw if d > 12.0])
    runs: list[list[_Component]] = [[discs[0]]]
    for comp in discs[1:]:
        if abs(float(np.dot(_merge(runs[-1]).centroid - comp.centroid, axis))) < FRAGMENT_FRACTION * spacing:
            runs[-1].append(comp)
        else:
            runs.append([comp])
    groups = [_merge(r) for r in runs]
    merged = [len(r) > 1 for r in runs]
    for g, was in zip(groups, merged, strict=True):
        if was:
            warnings.append(f"merged disc fragments at {np.round(g.centroid, 1).tolist()} mm into one disc")
    spacing, positions = _steps_along(
        [g.centroid for g in groups], lambda i: f"disc components {i} and {i + 1}", "disc(s)", warnings
    )
    return groups, merged, spacing, positions


def _check_mask_labels(mask_levels: list[int], warnings: list[str]) -> None:
    """Report what the mask's own disc labels get wrong: one level claimed twice, labels out of order."""
    for li, n in Counter(mask_levels).items():
        if n > 1:
            warnings.append(f"{n} disc components are labelled {LEVELS[li]} in the mask")
    if any(b <= a for a, b in zip(mask_levels, mask_levels[1:], strict=False)):
        order = [LEVELS[m] for m in mask_levels]
        warnings.append(f"mask disc labels out of order along the spine (superior → inferior): {order}")


def _draft_level(
    level: str,
    g: _Component,
    axis: np.ndarray,
    above: _Component | None,
    below: _Component | None,
    spacing: float,
    vertebra_xyz: np.ndarray,
    canal_xyz: np.ndarray,
    canal_slab_mm: float,
    anchor: str,
    anchor_unsure: bool,
    merged: bool,
    ref_volume: float,
    voxel_mm3: float,
    lateral_column: np.ndarray,
    affine: np.ndarray,
) -> dict:
    """The fields of one :class:`LevelLandmark` (all but the foramen offset), with its confidence and reasons."""
    normal, flat = _disc_normal(g.xyz, axis)
    n, post, left = disc_frame(normal)
    centroid = g.centroid
    doubts = _Doubts()
    lower = doubts.lower

    if anchor == "labels":
        lower(0.6, "level name from the mask's labels (no sacrum anchor)")
    elif anchor_unsure:
        lower(0.6, "level name from a sacrum anchor in doubt (see the warnings)")
    value, share = g.majority()
    mask_level = LEVEL_OF_DISC_LABEL[value]
    if mask_level != level:
        lower(0.7, f"the mask labels this disc {mask_level}")
    if share < 0.75:
        lower(0.85, f"mixed disc labels in one component ({share:.0%} {mask_level})")
    if merged:
        lower(0.8, "merged from several components")
    if g.edge_fraction > 0.1:
        lower(0.6, f"disc cut by the field of view ({g.edge_fraction:.0%} of it on the edge): centroid biased")
    elif g.touches_edge:
        lower(0.9, f"disc touches the edge of the field of view ({g.edge_fraction:.0%} of it)")
    if g.n < 0.4 * ref_volume:
        lower(0.7, f"small disc ({g.n / ref_volume:.0%} of the median)")
    if not flat:
        lower(0.9, "disc plane not measurable: normal from the spine axis")
    canal = _canal_point(canal_xyz, centroid, n, post, left, canal_slab_mm)
    source = "canal_label"
    if canal is None:
        b = (g.xyz - centroid) @ post
        canal = centroid + float(np.percentile(b, 98)) * post
        source = "disc_posterior_margin"
        lower(0.85, "no spinal canal at this level: canal point on the disc's posterior margin")
    return {
        "level": level,
        "xyz_lps_mm": _tuple3(centroid),
        "normal_lps": _tuple3(n),
        "canal_xyz_lps_mm": _tuple3(canal),
        "canal_source": source,
        "upper_vertebra_xyz_lps_mm": _maybe3(_body_centroid(vertebra_xyz, g, n, post, left, +1, above, spacing)),
        "lower_vertebra_xyz_lps_mm": _maybe3(_body_centroid(vertebra_xyz, g, n, post, left, -1, below, spacing)),
        "disc_voxels": g.n,
        "disc_volume_mm3": g.n * voxel_mm3,
        **doubts.fields(),
        "mask_level": mask_level,
        "_half_width": _disc_half_width(
            g, canal if source == "canal_label" else centroid, left, lateral_column, affine
        ),
    }


def _anchor_on_sacrum(
    sacra: list[_Component],
    lowest_disc: _Component,
    t: list[float],
    positions: list[int],
    axis: np.ndarray,
    origin: np.ndarray,
    spacing: float,
    warnings: list[str],
    small_t: Sequence[float] = (),
) -> tuple[str, int, bool]:
    """(anchor, offset, unsure): the disc just above the sacrum's upper endplate is l5_s1 (index 4).

    The sacrum's top is measured under the lowest disc only (inside its cross-section and below its
    plane), so a vertebra above it that carries the sacrum label, or posterior elements, do not raise it.
    A dropped disc fragment below that top means the "sacrum" may be a mislabelled L5 under a missed
    L5/S1: the anchor is kept but the result is unsure.
    """
    if not sacra:
        warnings.append("no sacrum in the mask: level names from the mask's disc labels (unsure)")
        return "none", 0, True
    # sacrum voxels inside the lowest disc's cross-section, split by its plane: below is the sacrum we
    # anchor on, above is a mislabelled vertebra (components may join the two through posterior elements)
    sacrum_xyz = np.concatenate([c.xyz for c in sacra])
    n, post, left = disc_frame(_disc_normal(lowest_disc.xyz, axis)[0])
    rel_disc = lowest_disc.xyz - lowest_disc.centroid
    b_lo, b_hi = np.percentile(rel_disc @ post, [2, 98])
    c_lim = float(np.percentile(np.abs(rel_disc @ left), 98))
    rel = sacrum_xyz - lowest_disc.centroid
    inside = (rel @ post >= b_lo - 5.0) & (rel @ post <= b_hi + 5.0) & (np.abs(rel @ left) <= c_lim + 5.0)
    under, over = inside & (rel @ n < 0), inside & (rel @ n > 0)
    if np.count_nonzero(over) >= 20:
        centre = np.round(sacrum_xyz[over].mean(axis=0), 1).tolist()
        warnings.append(f"sacrum label above the lowest disc (around {centre} mm): ignored")
    if np.count_nonzero(under) < 20:
        warnings.append("no sacrum under the lowest disc: the sacrum label is not trusted as the anchor")
        return "none", 0, True
    top = float(np.percentile((sacrum_xyz[under] - origin) @ axis, 98))
    last = int(np.argmin(t))  # the lowest disc, just above the sacrum
    gap = (t[last] - top) / spacing  # in disc spacings (see SACRUM_GAP_CUT)
    extra = 0 if gap < SACRUM_GAP_CUT else 1 + int(gap - SACRUM_GAP_CUT)  # whole spacings past the cut
    if extra > 1:
        warnings.append(
            f"the lowest disc is {t[last] - top:.0f} mm above the sacrum (about {extra} discs): "
            "the sacrum is not trusted"
        )
        return "none", 0, True
    if extra == 1:
        warnings.append(
            f"the lowest disc is {t[last] - top:.0f} mm above the sacrum: a vertebral body lies between, so it is"
            " l4_l5 and l5_s1 is missing from the mask"
        )
    offset = (len(LEVELS) - 1 - extra) - positions[last]
    unsure = False
    if SACRUM_GAP_DOUBT[0] <= gap <= SACRUM_GAP_DOUBT[1]:
        warnings.append(
            f"the lowest disc is {t[last] - top:.0f} mm above the sacrum ({gap:.2f} disc spacings): between a disc"
            " on the sacrum and one a vertebral body above it, so whether it is l5_s1 or l4_l5 is unsure"
        )
        unsure = True
    fragments = [ts for ts in small_t if ts < top - 5.0]
    if fragments:
        warnings.append(
            f"{len(fragments)} small disc fragment(s) below the sacrum's upper endplate: the sacrum may be a"
            " mislabelled L5 (unsure)"
        )
        unsure = True
    return "sacrum", offset, unsure
