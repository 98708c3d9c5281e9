"""Structure labels (the base model's vertebra / sacrum / disc / canal) → level labels, by counting.

The base model does not name levels: a network that must tell L3 from L4 by their look fails on a partial
field of view or a transitional spine. Names come from order instead: disc components are sorted along the
spine axis and counted up from the lowest one (the lumbosacral disc when the sacrum lies under it), each
vertebral body takes the name of the level between the discs around it. The result is a spineseg level
label volume (:data:`spine_seg.labels.SEG_LABELS`), which :func:`landmarks_from_labels` then anchors on the
sacrum again and scores; these provisional names matter only when there is no sacrum, and then the landmark
set is ``unsure``.

:func:`landmarks_from_label_volume` takes a label volume in either scheme and returns its landmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from spine_seg.core.constants import LEVELS
from spine_seg.core.geometry import voxel_to_world
from spine_seg.core.labels import BASE_LABELS, SEG_DISC_OF_LEVEL, SEG_LABELS, label_scheme_of
from spine_seg.landmarks import FRAGMENT_FRACTION, LandmarkSet, LevelLandmark, MissingLevel, landmarks_from_labels
from spine_seg.landmarks.components import _typical_spacing, label_components
from spine_seg.landmarks.frame import disc_frame

#: A component smaller than this many mm³ is noise.
MIN_STRUCTURE_MM3 = 150.0
#: The smallest sacrum that anchors the count: the upper sacrum in a sagittal field of view is several cm³
#: even in a thin slab of slices; less is specks inside L5 or noise.
MIN_SACRUM_MM3 = 1500.0
#: The same for a single sagittal slice or a slab thinner than a few mm (SPIDER's 2-D slices): the sacrum's
#: section must cover this many mm² per mm of the slab's thickness (an upper sacrum's mid-sagittal section is
#: 8–12 cm²); thicker stacks keep MIN_SACRUM_MM3.
MIN_SACRUM_MM2 = 300.0
#: Discs smaller than this fraction of the typical (median of the five largest) are slivers, not levels.
SMALL_DISC_FRACTION = 0.25
#: A disc inside the sacrum smaller than this fraction of a lumbar disc is an S1/S2 remnant, not a level.
REMNANT_FRACTION = 0.6
#: A disc component further than this (mm, left–right) from the disc next to it along the spine is not an
#: intervertebral disc: the sacroiliac joints and the sacral foramina, bright on T2 and shaped like a disc in
#: a sagittal slice, lie 25–35 mm off the midline (measured on VB2's wide fields of view); a scoliosis moves
#: the discs a few mm per level.
OFF_MIDLINE_MM = 15.0
#: Confidence ceiling of a level whose counting anchor is in doubt.
UNSURE_CONFIDENCE_CAP = 0.5
#: Vertebral bodies of the level scheme, cranial to caudal.
_BODIES = ("L1", "L2", "L3", "L4", "L5")


def _centroids(
    mask: np.ndarray, affine: np.ndarray, min_voxels: float
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]], np.ndarray]:
    """Component map, each kept component's voxel indices, and their LPS centroids."""
    cc, _ = label_components(mask)
    keep, centroids = [], []
    for index, box in enumerate(ndimage.find_objects(cc), start=1):
        if box is None:
            continue
        local = np.nonzero(cc[box] == index)
        if len(local[0]) < min_voxels:
            continue
        kji = np.stack([local[d] + box[d].start for d in range(3)], axis=1)
        keep.append((index, kji))
        centroids.append(_xyz(kji, affine).mean(axis=0))
    return cc, keep, np.array(centroids).reshape(-1, 3)


def seg_labels_from_base(labels: ArrayLike, affine: ArrayLike) -> np.ndarray:
    """A base-scheme label volume ``[k, j, i]`` → spineseg level labels, named by counting (module docstring)."""
    return relabel_base(labels, affine)[0]


def relabel_base(labels: ArrayLike, affine: ArrayLike) -> tuple[np.ndarray, list[str]]:
    """:func:`seg_labels_from_base` and the doubts it met on the way (each makes the names unsure).

    Bodies are named by where their voxels lie along the spine axis between the discs, not by connected
    component: in a thick-slice prediction neighbouring bodies often touch through a thin bridge.
    """
    doubts: list[str] = []
    labels = np.asarray(labels)
    affine = np.asarray(affine, dtype=float)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    min_voxels = MIN_STRUCTURE_MM3 / max(voxel_mm3, 1e-6)
    out = np.zeros(labels.shape, dtype=np.uint8)
    out[labels == BASE_LABELS["spinal_canal"]] = SEG_LABELS["spinal_canal"]
    _, discs, disc_xyz = _centroids(labels == BASE_LABELS["disc"], affine, min_voxels)
    if discs:
        # lateral slivers and specks would each count as a level: keep discs of a quarter of the typical size
        sizes = np.array([len(kji) for _, kji in discs])
        keep = sizes >= SMALL_DISC_FRACTION * float(np.median(np.sort(sizes)[::-1][:5]))
        keep[keep] = _on_the_midline(disc_xyz[keep], sizes[keep])
        discs = [d for d, k in zip(discs, keep, strict=True) if k]
        disc_xyz = disc_xyz[keep]
    body = labels == BASE_LABELS["vertebra"]
    cc, n = label_components(body)
    if n:  # specks smaller than a structure would each become a "small component" warning downstream
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        body = (sizes >= min_voxels)[cc] & body
    body_kji = np.argwhere(body)
    body_xyz = _xyz(body_kji, affine)
    if not discs and not len(body_kji):
        return out, doubts
    axis = _axis(disc_xyz if len(disc_xyz) >= 2 else body_xyz)
    disc_mid_t = float(np.median(disc_xyz @ axis)) if len(disc_xyz) else None
    sacrum_t = _usable_sacrum(labels, affine, voxel_mm3, axis, out, doubts, disc_mid_t)
    disc_t = np.array([])
    if discs:
        t = disc_xyz @ axis
        order = np.argsort(t)  # caudal first
        if sacrum_t is not None:
            sacrum_xyz = _xyz(np.argwhere(out == SEG_LABELS["sacrum"]), affine)
            # a disc is inside the sacrum (an S1/S2 remnant) when it lies below the sacrum's upper end and has
            # sacrum, not vertebra, right above it: a sacrum label that bleeds up behind L5 must not swallow
            # the real L5/S1 disc in front of it
            below = np.array(
                [
                    t[i] < sacrum_t - 10.0
                    and _above(disc_xyz[i], axis, sacrum_xyz) > _above(disc_xyz[i], axis, body_xyz)
                    for i in order
                ],
                dtype=bool,
            )
            if below.any():
                typical = float(np.median([len(discs[i][1]) for i in order[~below]])) if (~below).any() else 0.0
                under = sum(len(discs[i][1]) for i in order[below])
                if under >= REMNANT_FRACTION * typical:
                    doubts.append(
                        "a full-size disc below the sacrum's upper end: the sacrum may be a mislabelled L5; "
                        "level names unsure"
                    )
            order = order[~below]  # a thin S1/S2 remnant disc inside the sacrum is not a level
        positions = _merge_fragments(t[order])
        for rank, idx in zip(positions, order, strict=True):
            li = len(LEVELS) - 1 - rank
            if 0 <= li < len(LEVELS):
                _, kji = discs[idx]
                out[kji[:, 0], kji[:, 1], kji[:, 2]] = SEG_DISC_OF_LEVEL[LEVELS[li]]
        if len(order):
            ts = t[order]
            disc_t = np.array([float(np.mean(ts[positions == p])) for p in np.unique(positions)])
    if len(body_kji):
        tb = body_xyz @ axis
        keep = np.ones(len(tb), dtype=bool) if sacrum_t is None else tb > sacrum_t
        if len(disc_t):
            below = np.searchsorted(np.sort(disc_t), tb)  # discs under each voxel: 1 → L5, 2 → L4, …
            name_index = len(_BODIES) - below
        else:
            name_index = np.full(len(tb), -1)
        for i, name in enumerate(_BODIES):
            sel = keep & (name_index == i)
            k, j, ii = body_kji[sel].T
            out[k, j, ii] = SEG_LABELS[name]
    return out, doubts


def _usable_sacrum(
    labels: np.ndarray,
    affine: np.ndarray,
    voxel_mm3: float,
    axis: np.ndarray,
    out: np.ndarray,
    doubts: list[str],
    disc_mid_t: float | None,
) -> float | None:
    """The upper end (along ``axis``) of the sacrum if one can anchor the count (written into ``out``), else None.

    The sacrum is the largest sacrum component caudal to the middle disc (a "sacrum" at the cranial edge of
    the field of view is a mislabelled vertebra) and must hold MIN_SACRUM_MM3; specks are noise."""
    mask = labels == BASE_LABELS["sacrum"]
    if not mask.any():
        return None
    cc, n = label_components(mask)
    sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
    best, best_size = 0, 0
    for index, box in enumerate(ndimage.find_objects(cc), start=1):
        if box is None or sizes[index - 1] <= best_size:
            continue
        kji = np.argwhere(cc[box] == index) + [b.start for b in box]
        t = float(np.mean(_xyz(kji, affine) @ axis))
        if disc_mid_t is None or t < disc_mid_t:
            best, best_size = index, int(sizes[index - 1])
    extents = np.asarray(labels.shape[::-1], float) * np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    least = min(MIN_SACRUM_MM3, MIN_SACRUM_MM2 * float(extents.min()))  # a thin slab holds a thin sacrum
    if best == 0 or best_size * voxel_mm3 < least:
        doubts.append(f"no sacrum of at least {least / 1000:.2f} cm³ under the discs: not used as the anchor")
        return None
    part = cc == best
    out[part] = SEG_LABELS["sacrum"]
    kji = np.argwhere(part)
    xyz = _xyz(kji, affine)
    return float(np.percentile(xyz @ axis, 95))


def _on_the_midline(disc_xyz: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Which disc centroids follow the spine's left–right course (:data:`OFF_MIDLINE_MM`).

    The walk starts at the disc with the most others within OFF_MIDLINE_MM of it left–right (LPS x; the
    larger on a tie): the column of discs outnumbers whatever lies beside it. From there, up and then down
    in height, each disc is kept when it lies within OFF_MIDLINE_MM of the last disc kept on that side: a
    scoliosis moves a few mm per level and is followed; a joint beside the sacrum jumps 25–35 mm."""
    keep = np.zeros(len(disc_xyz), dtype=bool)
    if len(disc_xyz) == 0:
        return keep
    x = disc_xyz[:, 0]
    near = (np.abs(x[:, None] - x[None, :]) <= OFF_MIDLINE_MM).sum(axis=1)
    start = int(np.lexsort((sizes, near))[-1])  # most neighbours, then the largest
    order = list(np.argsort(disc_xyz[:, 2]))  # feet → head
    seed = order.index(start)
    keep[start] = True
    for side in (order[seed + 1 :], order[:seed][::-1]):  # upwards, then downwards from the seed
        last_x = float(x[start])
        for i in side:
            if abs(float(x[i]) - last_x) <= OFF_MIDLINE_MM:
                keep[i] = True
                last_x = float(x[i])
    return keep


def _xyz(kji: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Array indices ``[k, j, i]`` → LPS mm (the axis order numpy gives, the one geometry takes reversed)."""
    return voxel_to_world(affine, kji[:, ::-1])


def _above(
    centre: np.ndarray, axis: np.ndarray, points: np.ndarray, *, reach_mm: float = 15.0, radius_mm: float = 15.0
) -> int:
    """How many of ``points`` lie within ``reach_mm`` above ``centre`` along ``axis`` and within ``radius_mm``
    of the axis line through it: what sits on top of a disc."""
    if len(points) == 0:
        return 0
    d = points - centre
    along = d @ axis
    side = np.linalg.norm(d - np.outer(along, axis), axis=1)
    return int(np.count_nonzero((along > 0) & (along <= reach_mm) & (side <= radius_mm)))


def _axis(points: np.ndarray) -> np.ndarray:
    """The spine's direction through ``points``, pointing to the head (+z in LPS); z itself with < 2 points."""
    if len(points) >= 2:
        centred = points - points.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        if s[0] >= 10.0:
            a = vt[0]
            return a if a[2] >= 0 else -a
    return np.array([0.0, 0.0, 1.0])


def _merge_fragments(t_sorted: np.ndarray) -> np.ndarray:
    """Rank of each (sorted) disc position, with fragments closer than a fraction of the spacing merged (the
    landmark stage's own rule and typical spacing, so both stages see the same discs)."""
    if len(t_sorted) == 0:
        return np.zeros(0, dtype=int)
    gaps = np.diff(t_sorted)
    typical = _typical_spacing([float(g) for g in gaps if g > 12.0])
    ranks = [0]
    for g in gaps:
        ranks.append(ranks[-1] + (0 if g < FRAGMENT_FRACTION * typical else 1))
    return np.array(ranks)


#: A lowest disc tilted this much less than the most tilted disc above it has passed the lumbosacral junction.
JUNCTION_TURN_DEG = 12.0


def _junction_doubts(landmarks: LandmarkSet) -> list[str]:
    """Lordosis tilts each lumbar disc more than the one above it, up to L5/S1; the sacrum then curves the
    other way. A lowest "L5/S1" tilted clearly less than a disc above it is therefore more likely a remnant
    disc inside the sacrum (S1 taken for L5), and the count from it is in doubt."""
    levels = sorted(landmarks.levels, key=lambda lm: LEVELS.index(lm.level))
    if len(levels) < 4:
        return []
    ref = levels[0].normal + levels[1].normal
    ref = ref / max(float(np.linalg.norm(ref)), 1e-9)
    tilt = [float(np.degrees(np.arccos(np.clip(abs(lm.normal @ ref), 0.0, 1.0)))) for lm in levels]
    if max(tilt[:-1]) - tilt[-1] > JUNCTION_TURN_DEG:
        return [
            f"the lowest disc ({levels[-1].level}) is tilted {max(tilt[:-1]) - tilt[-1]:.0f}° less than one above "
            "it, as a remnant disc inside the sacrum would be: level names unsure"
        ]
    return []


def _over_sacral_remnant(landmarks: LandmarkSet, labels: np.ndarray, affine: np.ndarray, **options: Any) -> LandmarkSet:
    """The landmarks counted again with the lowest disc, named L5/S1 but turned back from the lordosis, taken
    for a remnant inside the sacrum: every disc is named one level lower (the count from the bottom started
    one disc too low), so the remnant falls below l5_s1 and a disc the first count put above l1_l2 becomes
    l1_l2. The names stay unsure (the caller caps them): this is the likelier reading, not a proof."""
    if LEVELS[-1] not in landmarks.found_levels:
        return landmarks  # the lowest disc found is not the one counted from
    landmarks = landmarks_from_labels(labels, affine, level_shift=1, **options)
    levels = tuple(
        replace(lm, reasons=(*lm.reasons, "renamed: the disc below it turns back into the sacrum"))
        for lm in landmarks.levels
    )
    return replace(landmarks, levels=levels)


#: Confidence of an L5/S1 placed between the facing endplates of L5 and the sacrum (no disc label there).
GAP_DISC_CONFIDENCE = 0.6
#: The gap (mm) between L5's lower and the sacrum's upper endplate that a disc, collapsed or whole, can fill:
#: under the lower bound the two overlap (a mislabelled body), over the upper one it is more than one disc.
GAP_DISC_MM = (-2.0, 18.0)
#: Slab (mm) of an endplate's voxels whose centre is taken as the endplate's centre.
ENDPLATE_SLAB_MM = 3.0
#: Width (mm) of the front-to-back strips in which L5's and the sacrum's facing endplates are compared, and how
#: many strips both must cover (6 mm of endplate) for a gap to be read.
ENDPLATE_STRIP_MM = 2.0
MIN_ENDPLATE_STRIPS = 3
#: How far (mm) from the L4/L5 disc's centre, across the spine, voxels count as L5's or the sacrum's.
COLUMN_RADIUS_MM = 25.0


def _lumbosacral_from_endplates(
    landmarks: LandmarkSet,
    labels: np.ndarray,
    affine: np.ndarray,
    body_values: list[int],
    sacrum_value: int,
    canal_value: int,
) -> LandmarkSet:
    """An L5/S1 the segmentation shows no disc for, placed midway between L5's lower endplate and the sacrum's
    upper one, where a sacrum anchors the names and L4/L5 was found: a collapsed (or dark, unsegmented) disc is
    still a level. Its confidence and reason say it was placed, not seen; anything else is left as it was."""
    if landmarks.anchor != "sacrum" or landmarks.unsure or LEVELS[-1] in landmarks.found_levels:
        return landmarks
    l45 = landmarks.get(LEVELS[-2])
    if l45 is None:
        return landmarks
    axis = l45.normal
    spacing = landmarks.disc_spacing_mm or 36.0

    def near(values: list[int], lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        kji = np.argwhere(np.isin(labels, values))
        xyz = voxel_to_world(affine, kji[:, ::-1]) if len(kji) else np.zeros((0, 3))
        rel = xyz - l45.disc_xyz
        t = rel @ axis
        radial = np.linalg.norm(rel - np.outer(t, axis), axis=1)
        keep = (t > lo) & (t < hi) & (radial <= COLUMN_RADIUS_MM)
        return xyz[keep], t[keep]

    body_xyz, body_t = near(body_values, -1.6 * spacing, 0.0)
    if len(body_t) < 20:
        return landmarks
    bottom = float(np.percentile(body_t, 2))
    sacrum_xyz, sacrum_t = near([sacrum_value], bottom - spacing, bottom + 15.0)
    if len(sacrum_t) < 20:
        return landmarks
    # the facing endplates column by column (2 mm strips front to back): the lumbosacral junction is wedged and
    # tilted, so the sacrum's promontory may stand above L5's back corner while every column still has a gap
    _, post, left = disc_frame(axis)
    body_u = np.floor(((body_xyz - l45.disc_xyz) @ post) / ENDPLATE_STRIP_MM).astype(int)
    sacrum_u = np.floor(((sacrum_xyz - l45.disc_xyz) @ post) / ENDPLATE_STRIP_MM).astype(int)
    lows, highs, strips = [], [], []
    for u in np.intersect1d(body_u, sacrum_u):
        lows.append(float(np.percentile(body_t[body_u == u], 3)))
        highs.append(float(np.percentile(sacrum_t[sacrum_u == u], 97)))
        strips.append(u)
    if len(strips) < MIN_ENDPLATE_STRIPS:
        return landmarks
    gaps = np.asarray(lows) - np.asarray(highs)
    gap = float(np.median(gaps))
    if not GAP_DISC_MM[0] <= gap <= GAP_DISC_MM[1]:
        return landmarks
    mid_t = float(np.median((np.asarray(lows) + np.asarray(highs)) / 2))
    mid_u = (float(np.median(strips)) + 0.5) * ENDPLATE_STRIP_MM
    centre_left = float((body_xyz[body_t <= bottom + ENDPLATE_SLAB_MM] - l45.disc_xyz).mean(axis=0) @ left)
    disc = l45.disc_xyz + mid_t * axis + mid_u * post + centre_left * left
    canal = l45.canal_xyz + float((disc - l45.disc_xyz) @ axis) * axis  # L4/L5's canal point, moved down
    canal_source = l45.canal_source
    kji = np.argwhere(labels == canal_value)
    if len(kji):
        xyz = voxel_to_world(affine, kji[:, ::-1])
        on = (np.abs((xyz - disc) @ axis) <= 2.0) & (np.linalg.norm(xyz - canal, axis=1) <= 15.0)
        if on.sum() >= 10:  # the canal label on the new disc plane: its antero-posterior place, on the midline
            canal = canal + float((xyz[on].mean(axis=0) - canal) @ post) * post
            canal_source = "canal_label"
    reason = (
        f"no disc label between L5 and the sacrum: placed midway between their facing endplates ({gap:.1f} mm "
        "apart, median over the columns; a collapsed or unsegmented disc)"
    )
    lm = LevelLandmark(
        level=LEVELS[-1],
        xyz_lps_mm=tuple(float(v) for v in disc),  # type: ignore[arg-type]
        normal_lps=l45.normal_lps,
        canal_xyz_lps_mm=tuple(float(v) for v in canal),  # type: ignore[arg-type]
        canal_source=canal_source,
        upper_vertebra_xyz_lps_mm=l45.lower_vertebra_xyz_lps_mm,
        lower_vertebra_xyz_lps_mm=tuple(float(v) for v in sacrum_xyz.mean(axis=0)),  # type: ignore[arg-type]
        confidence=min(GAP_DISC_CONFIDENCE, l45.confidence),
        reasons=(reason,),
        foramen_offset_mm=l45.foramen_offset_mm,
        foramen_offset_source=l45.foramen_offset_source,
        canal_midline_shift_mm=l45.canal_midline_shift_mm,
    )
    return replace(
        landmarks,
        levels=(*landmarks.levels, lm),
        missing=tuple(m for m in landmarks.missing if m.level != LEVELS[-1]),
        warnings=(*landmarks.warnings, f"l5_s1: {reason}"),
    )


def landmarks_from_label_volume(label_volume: Any, **options: Any) -> LandmarkSet:
    """Landmarks of a :class:`~spine_seg.segmentation.predict.LabelVolume` (anything with ``labels``,
    ``affine`` and ``label_names``: this layer does not import the segmentation one) in any label scheme."""
    labels, affine = label_volume.labels, label_volume.affine
    raw = np.asarray(labels)
    names: Mapping[int, str] = getattr(label_volume, "label_names", {}) or {}
    doubts: list[str] = []
    base = bool(names) and label_scheme_of({str(v): int(k) for k, v in names.items()}) == "base"
    if base:
        labels, doubts = relabel_base(labels, affine)
    landmarks = landmarks_from_labels(labels, affine, **options)
    if base:
        turn = _junction_doubts(landmarks)
        if turn:
            landmarks = _over_sacral_remnant(landmarks, labels, affine, **options)
        doubts += turn
    if not doubts:  # on the source's own labels: the relabelling drops a body it finds no disc under
        scheme = BASE_LABELS if base else SEG_LABELS
        bodies = [BASE_LABELS["vertebra"]] if base else [SEG_LABELS[b] for b in _BODIES]
        landmarks = _lumbosacral_from_endplates(
            landmarks, raw, np.asarray(affine, dtype=float), bodies, scheme["sacrum"], scheme["spinal_canal"]
        )
    if doubts and landmarks.levels:
        levels = tuple(
            replace(
                lm,
                confidence=min(lm.confidence, UNSURE_CONFIDENCE_CAP),
                reasons=(*lm.reasons, "counting anchor in doubt"),
            )
            for lm in landmarks.levels
        )
        landmarks = replace(landmarks, levels=levels, unsure=True, warnings=(*landmarks.warnings, *doubts))
    return landmarks


#: Confidence ceiling when the two sagittal series name the same discs differently.
DISAGREEMENT_CONFIDENCE_CAP = 0.4
#: A level named only through the other series' anchor keeps at most this much of that series' confidence.
BORROWED_CONFIDENCE_FACTOR = 0.9


#: What makes a series' names evidence (:func:`reconcile_sagittal`).
MIN_ANCHORED_LEVELS = 3
ANCHORED_CONFIDENCE = 0.8


def _anchored(landmarks: LandmarkSet) -> bool:
    confidences = [lm.confidence for lm in landmarks.levels]
    return (
        not landmarks.unsure
        and len(confidences) >= MIN_ANCHORED_LEVELS
        and float(np.median(confidences)) >= ANCHORED_CONFIDENCE
    )


def reconcile_sagittal(primary: LandmarkSet, other: LandmarkSet, other_name: str = "Sagittal T1") -> LandmarkSet:
    """The primary series' landmarks, their names checked against a second sagittal series of the same study.

    Both series see the same discs in patient space, so each primary disc is matched to the other series'
    nearest disc (within half a disc spacing) and the name offset between the two is read off. Then:

    * both anchored on a sacrum and agreeing: unchanged (the names had two independent anchors);
    * both anchored and disagreeing: one of the two sacra is wrong and nothing says which, so the names are
      unsure and every confidence is capped at :data:`DISAGREEMENT_CONFIDENCE_CAP`;
    * the primary unsure (no sacrum), the other anchored: the primary's discs take the other's names, with
      the other's confidence (times :data:`BORROWED_CONFIDENCE_FACTOR`), and are no longer unsure — a T2 that
      missed the sacrum is named by a T1 that found it;
    * otherwise (the other series not anchored, or no disc matched): unchanged, with a warning saying why.

    A series counts as anchored when its names are not unsure, it found at least :data:`MIN_ANCHORED_LEVELS`
    levels and their median confidence is at least :data:`ANCHORED_CONFIDENCE`: a T1 segmentation that found
    three scattered discs with a sacrum speck is no evidence against a T2 that found five.

    Positions are always the primary's: only names and confidences change.
    """
    if not primary.levels or not other.levels:
        return primary
    spacing = primary.disc_spacing_mm or other.disc_spacing_mm or 35.0
    other_xyz = np.array([lm.disc_xyz for lm in other.levels])
    offsets: list[int] = []
    matched: dict[str, LevelLandmark] = {}
    for lm in primary.levels:
        d = np.linalg.norm(other_xyz - lm.disc_xyz, axis=1)
        i = int(np.argmin(d))
        if d[i] <= 0.5 * spacing:
            offsets.append(LEVELS.index(other.levels[i].level) - LEVELS.index(lm.level))
            matched[lm.level] = other.levels[i]
    if not offsets:
        return replace(
            primary,
            warnings=(
                *primary.warnings,
                f"{other_name}: no disc lies near the primary series' discs; names not cross-checked",
            ),
        )
    values, counts = np.unique(offsets, return_counts=True)
    offset = int(values[np.argmax(counts)])
    split = len(values) > 1
    if not _anchored(other):
        if not _anchored(primary):
            return replace(
                primary, warnings=(*primary.warnings, f"{other_name}: no confident sacrum anchor there either")
            )
        return primary
    if _anchored(primary):
        if offset == 0 and not split:
            return primary
        how = (
            f"{abs(offset)} level{'s' if abs(offset) > 1 else ''} {'lower' if offset > 0 else 'higher'}"
            if offset
            else "some discs differently"
        )
        levels = tuple(
            replace(
                lm,
                confidence=min(lm.confidence, DISAGREEMENT_CONFIDENCE_CAP),
                reasons=(*lm.reasons, f"{other_name} names this disc differently"),
            )
            for lm in primary.levels
        )
        return replace(
            primary,
            levels=levels,
            unsure=True,
            warnings=(
                *primary.warnings,
                f"{other_name} names the discs {how} than this series: one of the "
                "two sacrum anchors is wrong; level names unsure",
            ),
        )
    return _named_from_other(primary, other, offset, split, matched, other_name)


def _named_from_other(
    primary: LandmarkSet,
    other: LandmarkSet,
    offset: int,
    split: bool,
    matched: Mapping[str, LevelLandmark],
    other_name: str,
) -> LandmarkSet:
    """The unanchored ``primary``'s discs renamed by ``offset`` to the anchored ``other``'s names, with its
    confidence (the matched disc's, else its lowest) times :data:`BORROWED_CONFIDENCE_FACTOR`; capped when
    the offsets were not all the same (``split``)."""
    renamed: list[LevelLandmark] = []
    for lm in primary.levels:
        index = LEVELS.index(lm.level) + offset
        if not 0 <= index < len(LEVELS):
            continue
        source = matched.get(lm.level)
        conf = BORROWED_CONFIDENCE_FACTOR * (
            source.confidence if source is not None else min(o.confidence for o in other.levels)
        )
        if split:
            conf = min(conf, UNSURE_CONFIDENCE_CAP)
        renamed.append(
            replace(
                lm,
                level=LEVELS[index],
                confidence=float(np.clip(conf, 0.0, 1.0)),
                reasons=tuple(r for r in lm.reasons if "anchor" not in r and "mask's labels" not in r)
                + (f"named from the {other_name}'s sacrum anchor",),
            )
        )
    names = {lm.level for lm in renamed}
    missing = tuple(
        MissingLevel(lv, f"not found on this series (names from the {other_name})") for lv in LEVELS if lv not in names
    )
    return replace(
        primary,
        levels=tuple(sorted(renamed, key=lambda lm: LEVELS.index(lm.level))),
        missing=missing,
        unsure=split,
        anchor=f"sacrum ({other_name})",
        warnings=(
            *primary.warnings,
            f"no sacrum anchor on this series: levels named from the {other_name}, shifted by {offset}",
        ),
    )
