"""Landmarks from a mask with vertebral bodies but no discs (MyoSegmenTUM's labels L1–L5, or a model
trained on them): each disc is placed midway between the facing endplates of the bodies around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import (
    SEG_LABELS,
)
from spine_seg.landmarks.components import (
    _Component,
    _components,
    _drop_small,
    _name_of,
    _steps_along,
    _typical_spacing,
    _voxels_xyz,
)
from spine_seg.landmarks.frame import _fit_axis, _tuple3, _unit, _unit_columns, _voxel_half_extent, disc_frame
from spine_seg.landmarks.measure import (
    _canal_point,
    _checked,
    _Doubts,
    _levels_with_foramen_offset,
    _offset_from_labels,
    _shifted,
)
from spine_seg.landmarks.missing import _expected_at, _landmark_set
from spine_seg.landmarks.types import (
    CANAL_BEHIND_BODY_MM,
    CANAL_LABEL,
    DEFAULT_FORAMEN_OFFSET_MM,
    FRAGMENT_FRACTION,
    SACRUM_LABEL,
    TYPICAL_DISC_HEIGHT_MM,
    VERTEBRA_DISC_CONFIDENCE,
    VERTEBRA_LABELS,
    VERTEBRA_NAMES,
    LandmarkSet,
    MissingLevel,
)


@dataclass(frozen=True)
class _Body:
    """A vertebral body cut from its vertebra's largest component, measured in its own frame along the spine.

    Heights are read on the body's central column (around its centroid, along ``tangent``), because a
    disc's centre sits between the centres of the two endplates around it; the depth on the midline, where
    the canal behind the body leaves a gap that separates the body from the posterior elements.
    """

    label: int  # the mask's label of the vertebra (L1..L5)
    comp: _Component  # the whole component, posterior elements included
    xyz: np.ndarray  # the body's voxels (LPS mm)
    centroid: np.ndarray
    tangent: np.ndarray  # the spine's direction at the body, pointing superior
    depth_mm: float  # antero-posterior depth on the midline
    top_mm: float  # centre of the upper endplate: distance from the centroid along the tangent (> 0)
    bottom_mm: float  # centre of the lower endplate (< 0)
    half_width_mm: float | None  # None when the field of view cuts the vertebra laterally

    @property
    def name(self) -> str:
        return _name_of(self.label)

    def endplate(self, side: int) -> np.ndarray:
        """Centre of the upper (``side`` > 0) or lower endplate."""
        return self.centroid + (self.top_mm if side > 0 else self.bottom_mm) * self.tangent


def _cut_body(comp: _Component, label: int, tangent: np.ndarray, affine: np.ndarray) -> _Body:
    """The vertebral body of one vertebra's component: its front part, up to the gap the canal leaves.

    Vertebra masks (SPIDER's, the synthetic cohort's, most predictions) hold the posterior elements too;
    they pull the centroid backwards by 5–10 mm and would put the disc point at the back of the disc. On the
    midline the body and the spinous process are separated by the canal, so the first run of voxels from
    the front, along the patient's posterior direction across the spine, is the body. A mask of bodies only
    (MyoSegmenTUM) has a single run and is kept whole.
    """
    n, post, left = disc_frame(tangent)
    step_post = 2 * _voxel_half_extent(affine, post)
    step_left = 2 * _voxel_half_extent(affine, left)
    step_n = 2 * _voxel_half_extent(affine, n)
    slab = max(5.0, step_left)  # at least one sagittal slice, however thick
    rel = comp.xyz - comp.centroid
    b, c = rel @ post, rel @ left
    on_midline = np.abs(c) <= slab
    midline = np.sort(b[on_midline] if np.any(on_midline) else b)
    gaps = np.nonzero(np.diff(midline) > max(3.0, 2.5 * step_post))[0]
    b_front = float(midline[0])
    b_back = float(midline[gaps[0]]) if len(gaps) else float(midline[-1])
    xyz = comp.xyz[(b >= b_front - 0.5 * step_post) & (b <= b_back + 0.5 * step_post)]
    centroid = xyz.mean(axis=0)
    rel = xyz - centroid
    a, b, c = rel @ n, rel @ post, rel @ left
    depth = b_back - b_front + step_post
    column = (np.abs(b) <= max(0.2 * depth, step_post)) & (np.abs(c) <= slab)
    if np.count_nonzero(column) < 5:
        column = np.ones(len(a), dtype=bool)
    half_width = None if any(comp.lateral_cut) else 0.5 * float(c.max() - c.min()) + 0.5 * step_left
    return _Body(
        label=label,
        comp=comp,
        xyz=xyz,
        centroid=centroid,
        tangent=n,
        depth_mm=depth,
        top_mm=float(a[column].max()) + 0.5 * step_n,
        bottom_mm=float(a[column].min()) - 0.5 * step_n,
        half_width_mm=half_width,
    )


def _tangents(centroids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The spine's direction at each body of a head-first list: the mean of the unit chords to its neighbours.

    Averaging the two chords (a central difference) follows the lordosis; one chord alone would tilt the
    body's frame towards the next body and skew its measured height.
    """
    chords = [_unit(a - b) for a, b in zip(centroids, centroids[1:], strict=False)]
    return [_unit(np.sum(chords[max(i - 1, 0) : i + 1], axis=0)) for i in range(len(centroids))]


def _orient_superior(
    axis: np.ndarray, centroids: Mapping[int, np.ndarray], sacrum: _Component | None, warnings: list[str]
) -> np.ndarray:
    """The axis pointing to the patient's head: by LPS z, or, when it lies across z, by the sacrum at the
    feet or else by the labels (L1 above L5)."""
    if abs(axis[2]) >= 0.3:
        return axis if axis[2] > 0 else -axis
    warnings.append(f"the spine axis {np.round(axis, 2).tolist()} is nearly perpendicular to the patient's S–I axis")
    middle = np.mean(list(centroids.values()), axis=0)
    if sacrum is not None:
        return -axis if np.dot(sacrum.centroid - middle, axis) > 0 else axis
    top, bottom = centroids[min(centroids)], centroids[max(centroids)]
    return -axis if np.dot(top - bottom, axis) < 0 else axis


def _order_bodies(bodies: list[_Body], axis: np.ndarray, warnings: list[str]) -> tuple[list[_Body], float, list[int]]:
    """Bodies from head to feet, one per height, and each one's position counting gaps.

    Returns (bodies, typical centroid-to-centroid spacing in mm, positions); two labels at one height (a body
    split between two labels) keep the larger; a distance of about two spacings is a missing vertebra.
    """
    bodies = sorted(bodies, key=lambda body: -float(np.dot(body.centroid, axis)))
    raw = [float(np.linalg.norm(a.centroid - b.centroid)) for a, b in zip(bodies, bodies[1:], strict=False)]
    spacing = _typical_spacing([d for d in raw if d > 12.0])
    kept = [bodies[0]]
    for body in bodies[1:]:
        prev = kept[-1]
        if abs(float(np.dot(prev.centroid - body.centroid, axis))) < FRAGMENT_FRACTION * spacing:
            big, small = (prev, body) if prev.comp.n >= body.comp.n else (body, prev)
            warnings.append(
                f"{prev.name} and {body.name} lie at one height along the spine: "
                f"kept {big.name} (larger), dropped {small.name}"
            )
            kept[-1] = big
        else:
            kept.append(body)
    spacing, positions = _steps_along(
        [body.centroid for body in kept], lambda i: f"{kept[i].name} and {kept[i + 1].name}", "vertebra(e)", warnings
    )
    return kept, spacing, positions


@dataclass(frozen=True)
class _SacrumTop:
    """The sacrum under the lowest lumbar body: its upper endplate's centre, S1's centroid, and how many
    vertebrae are missing in between (0: the lowest body is L5)."""

    endplate: np.ndarray
    s1_centroid: np.ndarray
    extra: int
    split: bool = False  # the sacrum label held a body above a disc-like gap (L5 labelled sacrum?)


def _sacrum_below(
    sacrum: _Component, lowest: _Body, spacing: float, affine: np.ndarray, warnings: list[str]
) -> _SacrumTop | None:
    """Where the sacrum meets the lowest body, or None (with a warning) when it is not under it.

    Only sacrum voxels inside the lowest body's footprint count, so the sacral wings and a mislabelled
    vertebra beside the body do not move the endplate; its height is read on the body's central column.
    """
    n, post, left = disc_frame(lowest.tangent)
    rel_body = lowest.xyz - lowest.centroid
    bb, cb = rel_body @ post, rel_body @ left
    rel = sacrum.xyz - lowest.centroid
    a, b, c = rel @ n, rel @ post, rel @ left
    foot = (b >= bb.min() - 5.0) & (b <= bb.max() + 5.0) & (np.abs(c) <= np.abs(cb).max() + 5.0)
    over = foot & (a > lowest.bottom_mm)
    if np.count_nonzero(over) >= 20:
        centre = np.round(sacrum.xyz[over].mean(axis=0), 1).tolist()
        warnings.append(
            f"sacrum label beside or above {lowest.name}, the lowest vertebra (around {centre} mm): ignored"
        )
    under = foot & (a <= lowest.bottom_mm)
    if np.count_nonzero(under) < 20:
        warnings.append(
            f"no sacrum under {lowest.name}, the lowest vertebra: the sacrum label is not trusted as the anchor"
        )
        return None
    # a thin line down the body's centre: the sacral endplate is tilted against L5 (the L5/S1 disc is a
    # wedge), and across a wider column its high corner would lift the endplate and fill a gap below L5
    step_post = 2 * _voxel_half_extent(affine, post)
    slab = max(5.0, 2 * _voxel_half_extent(affine, left))
    column = under & (np.abs(b) <= max(1.5, step_post)) & (np.abs(c) <= slab)
    split = False
    if np.count_nonzero(column) >= 5:
        heights = np.sort(a[column])[::-1]
        top = float(heights[0])
        # a disc-like gap below a body-high run: the run is a vertebra labelled sacrum (L5, its disc missed)
        # fused with the real sacrum through the posterior elements; the sacrum starts below the gap
        gaps = np.nonzero(-np.diff(heights) > max(3.0, 5 * _voxel_half_extent(affine, n)))[0]
        if len(gaps) and top - heights[gaps[0]] >= 0.6 * (lowest.top_mm - lowest.bottom_mm):
            warnings.append(
                f"the sacrum label under {lowest.name} holds a body above a "
                f"{heights[gaps[0]] - heights[gaps[0] + 1]:.0f} mm"
                " gap: taken as a vertebra labelled sacrum, the sacrum starts below the gap (unsure)"
            )
            top, split = float(heights[gaps[0] + 1]), True
            under = under & (a <= top)
    else:
        top = float(np.percentile(a[under], 98))
    top += _voxel_half_extent(affine, n)
    gap = lowest.bottom_mm - top
    extra = max(0, int(round((gap - TYPICAL_DISC_HEIGHT_MM) / spacing)))
    if extra > 1:
        warnings.append(
            f"the sacrum is {gap:.0f} mm below {lowest.name} (about {extra} vertebrae): the sacrum is not trusted"
        )
        return None
    if extra == 1:
        warnings.append(f"the sacrum is {gap:.0f} mm below {lowest.name}: one vertebra (L5) missing from the mask")
    s1 = under & (a >= top - (lowest.top_mm - lowest.bottom_mm))
    return _SacrumTop(lowest.centroid + top * n, sacrum.xyz[s1].mean(axis=0), extra, split)


def landmarks_from_vertebrae(
    labels: np.ndarray,
    affine: ArrayLike,
    *,
    canal_slab_mm: float = 3.0,
    canal_behind_body_mm: float = CANAL_BEHIND_BODY_MM,
    default_foramen_offset_mm: float = DEFAULT_FORAMEN_OFFSET_MM,
) -> LandmarkSet:
    """Level landmarks from the vertebral bodies of a label volume, for masks without discs.

    MyoSegmenTUM's masks (and a model trained on them) label L1–L5 only: no discs, sacrum or canal. The
    disc of a level is then placed midway between the facing endplates of the bodies above and below it,
    its normal is the chord between the two bodies, and the canal point is estimated behind the bodies
    (``canal_source="vertebra_posterior_estimate"``) unless the mask has a canal label there. L5/S1 needs
    a sacrum label under L5; with one the level names are counted up from it (``anchor="sacrum"``),
    without one they are the mask's own labels (``anchor="labels"``, ``unsure``). Disc labels in the mask,
    if any, are not used. ``source="vertebrae"``.
    """
    labels, affine = _checked(labels, affine)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    lateral_axis = 2 - int(np.argmax(np.abs(_unit_columns(affine)[0])))
    warnings: list[str] = []
    vertebrae = {
        value: _drop_small(_components(labels, (value,), affine, lateral_axis), voxel_mm3, _name_of(value), warnings)
        for value in VERTEBRA_LABELS
    }
    return _from_vertebrae(
        labels,
        affine,
        vertebrae,
        warnings,
        canal_slab_mm=canal_slab_mm,
        canal_behind_body_mm=canal_behind_body_mm,
        default_foramen_offset_mm=default_foramen_offset_mm,
    )


def _from_vertebrae(
    labels: np.ndarray,
    affine: np.ndarray,
    vertebrae: Mapping[int, list[_Component]],
    warnings: list[str],
    *,
    canal_slab_mm: float,
    canal_behind_body_mm: float,
    default_foramen_offset_mm: float,
    level_shift: int = 0,
) -> LandmarkSet:
    """:func:`landmarks_from_vertebrae` on components already found (``landmarks_from_labels`` has them).

    Long on purpose: order the bodies, anchor on the sacrum, name, place each disc, then list what is missing;
    every step adds to the same warnings and reads the previous step's bodies, as in ``landmarks_from_labels``.
    """
    comps: dict[int, _Component] = {}
    for value in VERTEBRA_LABELS[:5]:
        found = sorted(vertebrae[value], key=lambda comp: -comp.n)
        if not found:
            continue
        if len(found) > 1 and found[1].n > 0.3 * found[0].n:
            warnings.append(f"{len(found)} components labelled {_name_of(value)}: the largest is used")
        comps[value] = found[0]
    sacra = sorted(vertebrae[SACRUM_LABEL], key=lambda comp: -comp.n)
    sacra = [comp for comp in sacra if comp.n > 0.3 * sacra[0].n]  # smaller ones: fragments, not bodies
    sacrum = sacra[0] if sacra else None
    if len(comps) < 2:
        reason = "fewer than two lumbar vertebrae in the mask: no disc can be placed between them"
        missing = tuple(MissingLevel(lv, reason) for lv in LEVELS)
        return LandmarkSet((), missing, tuple(warnings), True, "none", source="vertebrae")

    centroids = {v: c.centroid for v, c in comps.items()}
    axis = _fit_axis(np.array(list(centroids.values())))
    if axis is None:
        warnings.append("the vertebrae do not spread along a line: spine axis taken as the patient's S–I axis")
        axis = np.array([0.0, 0.0, 1.0])
    axis = _orient_superior(axis, centroids, sacrum, warnings)
    cut = [_cut_body(c, v, axis, affine) for v, c in comps.items()]
    sacra.sort(key=lambda comp: float(np.dot(comp.centroid, axis)))
    sacrum = sacra[0] if sacra else None
    relabelled = False
    for comp in sacra[1:]:
        # a second large "sacrum" above the lowest one is a vertebra (L5 labelled sacrum): it joins the lumbar
        # bodies and the lowest one anchors. A sacrum split in two would look the same, hence unsure
        warnings.append(
            f"sacrum label on a body above the sacrum (around {np.round(comp.centroid, 1).tolist()} mm):"
            " counted as a vertebra (unsure)"
        )
        cut.append(_cut_body(comp, SACRUM_LABEL, axis, affine))
        relabelled = True
    bodies, spacing, positions = _order_bodies(cut, axis, warnings)
    for _ in range(2):  # the frame follows the bodies' own chords, then the bodies are cut again in it
        tangents = _tangents([body.centroid for body in bodies])
        bodies = [_cut_body(body.comp, body.label, t, affine) for body, t in zip(bodies, tangents, strict=True)]

    mask_index = [body.label - SEG_LABELS["L1"] for body in bodies]
    out_of_order = any(b <= a for a, b in zip(mask_index, mask_index[1:], strict=False))
    if out_of_order:
        order = [body.name for body in bodies]
        warnings.append(f"vertebra labels out of order along the spine (superior → inferior): {order}")
    top = _sacrum_below(sacrum, bodies[-1], spacing, affine, warnings) if sacrum is not None else None
    if top is not None:
        anchor, unsure = "sacrum", out_of_order or relabelled or top.split
        offset = (len(LEVELS) - 1 - top.extra) - positions[-1]
    else:
        if sacrum is None:
            warnings.append("no sacrum in the mask: level names from the mask's vertebra labels (unsure)")
        offset, clear = _offset_from_labels(positions, mask_index, warnings, what="vertebra")
        anchor, unsure = "labels", True
        if not clear:
            warnings.append("the mask's vertebra labels disagree about the offset: level names are a guess")
    offset += _shifted(level_shift, warnings)
    named: dict[int, _Body] = {}
    for body, p in zip(bodies, positions, strict=True):
        index = p + offset
        if 0 <= index < len(LEVELS):
            named[index] = body
        else:
            where = "above L1" if index < 0 else "below L5"
            warnings.append(f"{body.name} at {np.round(body.centroid, 1).tolist()} mm lies {where}: ignored")

    canal_xyz, _ = _voxels_xyz(labels, labels == CANAL_LABEL, affine)
    drafts = []
    for li, level in enumerate(LEVELS):
        upper = named.get(li)
        if upper is None:
            continue
        if li + 1 in named:
            lower = named[li + 1]
            lower_side: tuple[Any, Any, Any, Any, Any] = (
                lower.centroid,
                lower.endplate(+1),
                lower.depth_mm,
                lower.label,
                lower.comp,
            )
        elif li == len(LEVELS) - 1 and top is not None and top.extra == 0:
            lower_side = (top.s1_centroid, top.endplate, upper.depth_mm, SACRUM_LABEL, sacrum)
        else:
            continue
        drafts.append(
            _vertebra_level_draft(
                level, upper, *lower_side, anchor, spacing, canal_xyz, canal_slab_mm, canal_behind_body_mm
            )
        )

    widths = [body.half_width_mm for body in named.values() if body.half_width_mm is not None]
    found_levels = _levels_with_foramen_offset(drafts, widths, "body_width", default_foramen_offset_mm, affine)
    no_sacrum: str | None = None  # why there is no body below L5 (None: the sacrum is there)
    if sacrum is None:
        no_sacrum = "no sacrum in the mask"
    elif top is None:
        no_sacrum = "the sacrum label is not under the lowest vertebra (see warnings)"
    missing_levels = _missing_vertebra_levels(
        {lm.level for lm in found_levels}, named, no_sacrum, labels.shape, affine, axis, spacing
    )
    return _landmark_set(found_levels, missing_levels, warnings, unsure, anchor, axis, spacing, "vertebrae")


def _vertebra_level_draft(
    level: str,
    upper: _Body,
    lower_centroid: np.ndarray,
    lower_endplate: np.ndarray,
    lower_depth_mm: float,
    lower_label: int,
    lower_comp: _Component,
    anchor: str,
    spacing: float,
    canal_xyz: np.ndarray,
    canal_slab_mm: float,
    canal_behind_body_mm: float,
) -> dict:
    """The fields of one :class:`LevelLandmark` placed between two bodies, with its confidence and reasons."""
    doubts = _Doubts()
    lower = doubts.lower

    lower(VERTEBRA_DISC_CONFIDENCE, "disc inferred from the vertebral bodies above and below it (no disc in the mask)")
    if anchor == "labels":
        lower(0.6, "level name from the mask's labels (no sacrum anchor)")
    upper_end = upper.endplate(-1)
    disc = 0.5 * (upper_end + lower_endplate)
    n, post, left = disc_frame(_unit(upper.centroid - lower_centroid))
    lower_name = "S1" if lower_label == SACRUM_LABEL else _name_of(lower_label)
    upper_index = upper.label - SEG_LABELS["L1"]
    mask_level = LEVELS[upper_index] if lower_label == upper.label + 1 and upper_index < len(LEVELS) else None
    if mask_level != level:
        lower(0.7, f"the mask labels the bodies around this disc {upper.name} and {lower_name}")
    height = float(np.dot(upper_end - lower_endplate, n))
    if not 0.0 < height < 0.6 * spacing:
        lower(0.8, f"the endplates around this disc are {height:.0f} mm apart along the spine: a disc is 5–15 mm")
    for name, comp in ((upper.name, upper.comp), (lower_name, lower_comp)):
        if comp.edge_fraction > 0.1:
            lower(
                0.6, f"{name} cut by the field of view ({comp.edge_fraction:.0%} of it on the edge): disc point biased"
            )
        elif comp.touches_edge:
            lower(0.9, f"{name} touches the edge of the field of view ({comp.edge_fraction:.0%} of it)")
    canal = _canal_point(canal_xyz, disc, n, post, left, canal_slab_mm)
    source = "canal_label"
    if canal is None:
        behind = 0.25 * (upper.depth_mm + lower_depth_mm) + canal_behind_body_mm
        canal = disc + behind * post
        source = "vertebra_posterior_estimate"
        lower(0.85, f"no spinal canal label: canal point estimated {behind:.0f} mm behind the disc point")
    return {
        "level": level,
        "xyz_lps_mm": _tuple3(disc),
        "normal_lps": _tuple3(n),
        "canal_xyz_lps_mm": _tuple3(canal),
        "canal_source": source,
        "upper_vertebra_xyz_lps_mm": _tuple3(upper.centroid),
        "lower_vertebra_xyz_lps_mm": _tuple3(lower_centroid),
        **doubts.fields(),
        "mask_level": mask_level,
    }


def _missing_vertebra_levels(
    found: set[str],
    named: Mapping[int, _Body],
    no_sacrum: str | None,
    shape: tuple[int, ...],
    affine: np.ndarray,
    axis: np.ndarray,
    spacing: float,
) -> list[MissingLevel]:
    """Why each level is absent: which body around it is missing, and whether it would lie in the image."""
    missing = []
    for li, level in enumerate(LEVELS):
        if level in found:
            continue
        parts, sides = [], []
        for k, side in ((li, "above"), (li + 1, "below")):
            if k in named or (k == len(LEVELS) and no_sacrum is None):
                continue
            sides.append(side)
            if k == len(LEVELS):
                parts.append(str(no_sacrum))
                continue
            name = VERTEBRA_NAMES[k]
            if not named:
                parts.append(f"no {name} in the mask")
                continue
            nearest = min(named, key=lambda j: abs(j - k))
            where, inside = _expected_at(named[nearest].centroid, nearest - k, spacing, axis, shape, affine)
            if inside:
                parts.append(
                    f"no {name} in the mask (expected about {where} mm, inside the field of view: not segmented)"
                )
            else:
                parts.append(f"no {name} in the mask (expected about {where} mm, outside the field of view)")
        upper, lower = VERTEBRA_NAMES[li], "S1" if li + 1 == len(LEVELS) else VERTEBRA_NAMES[li + 1]
        needs = "the bodies above and below it" if len(sides) == 2 else f"the body {sides[0]} it"
        missing.append(MissingLevel(level, f"{'; '.join(parts)}: {upper}/{lower} needs {needs}"))
    return missing
