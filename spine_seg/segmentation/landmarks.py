"""Label volume (spineseg labels on the Sagittal T2 stack) → per-level landmarks in patient space (LPS mm).

A predicted mask is evidence, not truth: nnU-Net may call L4 "L5", split a disc in two, miss one, or see
only part of the spine when the field of view is short. So level names are *not* read from the label ids.
Instead:

1. every disc-labelled voxel (any of the five disc labels) is grouped into connected components; tiny ones
   are dropped as spurious;
2. the components are ordered along the spine's own axis, fitted through the disc and vertebra centroids in
   patient space (never the image's row axis), pointing to the patient's head (+z in LPS);
3. gaps (a missed disc) are found from the spacing between consecutive discs, fragments of one disc are
   merged;
4. the order is anchored on the sacrum: the disc just above the sacrum's upper endplate is L5/S1. Without a
   trustworthy sacrum the mask's own disc labels vote for the offset, and the result is marked ``unsure``;
5. everything that disagrees (two components claiming one level, labels out of order, a level the mask
   names differently from the anchor, gaps) is reported as a warning and lowers the level's confidence.

Each level then gets its disc centroid, the centroids of the vertebral bodies above and below (vertebra
voxels of any label inside the disc's cross-section between neighbouring disc planes, so posterior elements
and label mistakes do not pull them), the spinal canal point (centroid of the canal label in a slab around
the disc plane, or the disc's posterior margin without a canal) and a lateral foramen offset estimated from
the disc's width. ``project.py`` takes these into the other series.

A mask with vertebral bodies but no discs (MyoSegmenTUM's labels L1–L5, or a model trained on them) goes to
:func:`landmarks_from_vertebrae`: each disc is placed midway between the facing endplates of the bodies
around it, the canal point is estimated behind the bodies, L5/S1 needs a sacrum label, and the level names
come from the sacrum when there is one, else from the labels (``unsure``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from spine_seg.constants import LEVELS
from spine_seg.labels import (
    SEG_DISC_OF_LEVEL,
    SEG_LABELS,
    SPIDER_PARTIAL_OFFSET,
    SPIDER_VERTEBRA_NUMBER,
    spider_to_seg_lut,
)

#: Lumbar vertebrae and the sacrum, cranial to caudal, as spineseg labels them.
VERTEBRA_NAMES: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5", "sacrum")
VERTEBRA_LABELS: tuple[int, ...] = tuple(SEG_LABELS[n] for n in VERTEBRA_NAMES)
DISC_LABELS: tuple[int, ...] = tuple(SEG_DISC_OF_LEVEL[lv] for lv in LEVELS)
LEVEL_OF_DISC_LABEL: dict[int, str] = {v: k for k, v in SEG_DISC_OF_LEVEL.items()}
CANAL_LABEL = SEG_LABELS["spinal_canal"]
SACRUM_LABEL = SEG_LABELS["sacrum"]
#: The vertebra above / below each level's disc.
UPPER_VERTEBRA: dict[str, str] = dict(zip(LEVELS, VERTEBRA_NAMES[:5], strict=True))
LOWER_VERTEBRA: dict[str, str] = dict(zip(LEVELS, VERTEBRA_NAMES[1:], strict=True))

#: Disc-to-disc distance assumed when the mask has too few discs to measure it (adult lumbar spine:
#: about 30–40 mm between neighbouring disc centres).
PRIOR_DISC_SPACING_MM = 36.0
#: Components closer than this fraction of the typical spacing along the spine are fragments of one structure.
FRAGMENT_FRACTION = 0.35
#: Lateral distance of the neural foramen from the midline when the mask cannot measure it. Lumbar
#: foramina lie just lateral to the pedicles, about 15–22 mm from the midline; the ten annotated foramina
#: of study 100206310 lie 13–22 mm (mean 16.6 mm) from its spinal keypoints, the phantom's 16–18.5 mm.
DEFAULT_FORAMEN_OFFSET_MM = 18.0
#: Foramen offset as a fraction of the discs' median half-width (a disc is as wide as its vertebral body,
#: and the foramen sits over its posterolateral corner); clamped to FORAMEN_OFFSET_RANGE_MM. Disc, not
#: vertebra, width: vertebra masks (SPIDER's among them) hold the transverse processes.
FORAMEN_OFFSET_PER_HALF_WIDTH = 0.75
FORAMEN_OFFSET_RANGE_MM = (14.0, 24.0)
#: Distance of the spinal canal's centre behind the vertebral bodies' posterior wall, for masks without a
#: canal label: the lumbar canal is about 15–18 mm deep, so its centre lies about 8 mm behind the wall (the
#: synthetic phantom puts it 8–10 mm behind: 1.5 mm + half a 13–17 mm canal).
CANAL_BEHIND_BODY_MM = 8.0
#: Confidence factor of a disc placed between vertebral bodies (the mask has no disc to measure).
VERTEBRA_DISC_CONFIDENCE = 0.7
#: Typical lumbar disc height, to tell a disc's gap between two bodies from a missing vertebra.
TYPICAL_DISC_HEIGHT_MM = 10.0
#: Components smaller than this fraction of the typical disc (or vertebra) are treated as spurious.
MIN_COMPONENT_FRACTION = 0.1
MIN_COMPONENT_MM3 = 100.0


@dataclass(frozen=True)
class LevelLandmark:
    """One disc level in patient space, with how far it can be trusted and why not more."""

    level: str
    xyz_lps_mm: tuple[float, float, float]  # disc centroid
    normal_lps: tuple[float, float, float]  # unit normal of the disc plane, pointing superior
    canal_xyz_lps_mm: tuple[float, float, float]
    # "canal_label", "disc_posterior_margin", "keypoint" or "vertebra_posterior_estimate" (a mask without
    # discs or canal: half the bodies' depth + CANAL_BEHIND_BODY_MM behind the disc point, in the disc plane)
    canal_source: str
    upper_vertebra_xyz_lps_mm: tuple[float, float, float] | None = None
    lower_vertebra_xyz_lps_mm: tuple[float, float, float] | None = None
    disc_voxels: int = 0
    disc_volume_mm3: float = 0.0
    confidence: float = 1.0
    reasons: tuple[str, ...] = ()  # why confidence is below 1
    mask_level: str | None = None  # what the mask's labels call this disc (None: not from a mask)
    foramen_offset_mm: float | None = None  # lateral distance of the foramina from the canal point
    # "disc_width" (the study's median), "body_width" (vertebral bodies', for masks without discs), "given"
    # or "default"
    foramen_offset_source: str = "default"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; valid: {list(LEVELS)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    @property
    def disc_xyz(self) -> np.ndarray:
        return np.asarray(self.xyz_lps_mm, dtype=float)

    @property
    def canal_xyz(self) -> np.ndarray:
        return np.asarray(self.canal_xyz_lps_mm, dtype=float)

    @property
    def normal(self) -> np.ndarray:
        return np.asarray(self.normal_lps, dtype=float)

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "disc_xyz_lps_mm": _rounded(self.xyz_lps_mm),
            "normal_lps": _rounded(self.normal_lps, 4),
            "canal_xyz_lps_mm": _rounded(self.canal_xyz_lps_mm),
            "canal_source": self.canal_source,
            "upper_vertebra": UPPER_VERTEBRA[self.level],
            "upper_vertebra_xyz_lps_mm": _rounded(self.upper_vertebra_xyz_lps_mm),
            "lower_vertebra": LOWER_VERTEBRA[self.level],
            "lower_vertebra_xyz_lps_mm": _rounded(self.lower_vertebra_xyz_lps_mm),
            "disc_voxels": self.disc_voxels,
            "disc_volume_mm3": round(self.disc_volume_mm3, 1),
            "confidence": round(self.confidence, 3),
            "reasons": list(self.reasons),
            "mask_level": self.mask_level,
            "foramen_offset_mm": None if self.foramen_offset_mm is None else round(self.foramen_offset_mm, 2),
            "foramen_offset_source": self.foramen_offset_source,
        }


@dataclass(frozen=True)
class MissingLevel:
    level: str
    reason: str

    def to_dict(self) -> dict:
        return {"level": self.level, "reason": self.reason}


@dataclass(frozen=True)
class LandmarkSet:
    """The levels found, the levels missing (with why), warnings, and whether the level names are unsure.

    ``unsure`` means the level *names* may be off by one or more (no sacrum anchor, or inconsistent
    evidence); positions of what was found are still measured.
    """

    levels: tuple[LevelLandmark, ...]
    missing: tuple[MissingLevel, ...]
    warnings: tuple[str, ...]
    unsure: bool
    anchor: str  # "sacrum", "labels", "keypoints" or "none"
    axis_superior_lps: tuple[float, float, float] | None = None
    disc_spacing_mm: float | None = None
    source: str = "mask"  # "mask", "vertebrae" (discs placed between the bodies), "keypoints", …

    @property
    def found_levels(self) -> tuple[str, ...]:
        return tuple(lm.level for lm in self.levels)

    @property
    def missing_levels(self) -> tuple[str, ...]:
        return tuple(m.level for m in self.missing)

    def get(self, level: str) -> LevelLandmark | None:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; valid: {list(LEVELS)}")
        return next((lm for lm in self.levels if lm.level == level), None)

    def __getitem__(self, level: str) -> LevelLandmark:
        lm = self.get(level)
        if lm is None:
            raise KeyError(f"level {level!r} not found; found: {list(self.found_levels)}")
        return lm

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "anchor": self.anchor,
            "unsure": self.unsure,
            "levels": [lm.to_dict() for lm in self.levels],
            "missing": [m.to_dict() for m in self.missing],
            "warnings": list(self.warnings),
            "axis_superior_lps": _rounded(self.axis_superior_lps, 4),
            "disc_spacing_mm": None if self.disc_spacing_mm is None else round(self.disc_spacing_mm, 2),
        }


# ---------------------------------------------------------------------------------------------------------
# input helpers


def seg_labels_from_spider(mask: ArrayLike, keep_partial: bool = True) -> np.ndarray:
    """SPIDER mask values → spineseg labels (uint8), through :func:`spine_seg.labels.spider_to_seg_lut`.

    ``keep_partial`` also maps SPIDER's partly visible vertebrae (100 + number) to their vertebra: the
    sacrum nearly always touches the edge of a sagittal field of view, and without it there is no anchor
    for the level names. Values outside the lookup (T12 and above, their discs) become background.
    """
    mask = np.asarray(mask)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or not np.all(mask == np.round(mask)):
            raise ValueError("SPIDER mask holds non-integer values; expected integer labels")
    mask = mask.astype(np.int64)
    if mask.size and mask.min() < 0:
        raise ValueError(f"SPIDER mask holds negative values (min {mask.min()}); expected labels ≥ 0")
    lut = dict(spider_to_seg_lut())
    if keep_partial:
        for number in SPIDER_VERTEBRA_NUMBER.values():
            full = lut.get(number)
            if full is not None:
                lut[SPIDER_PARTIAL_OFFSET + number] = full
    if mask.size == 0:
        return mask.astype(np.uint8)
    table = np.zeros(int(max(mask.max(), max(lut))) + 1, dtype=np.uint8)
    for k, v in lut.items():
        table[k] = v
    return table[mask]


def affine_from_sitk(image) -> np.ndarray:
    """Voxel (i, j, k) → LPS mm affine of a SimpleITK image (ITK's physical space is LPS)."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing[None, :]
    affine[:3, 3] = np.asarray(image.GetOrigin(), dtype=float)
    return affine


def load_label_volume(path: str | Path, spider: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a label image (.mha, .nii.gz, …) → (labels [k, j, i], affine); ``spider`` converts SPIDER values."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label image not found")
    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3:
        raise ValueError(f"{path}: expected a 3-D label image, got {image.GetDimension()}-D")
    array = sitk.GetArrayFromImage(image)
    labels = seg_labels_from_spider(array) if spider else array
    return labels, affine_from_sitk(image)


# ---------------------------------------------------------------------------------------------------------
# components


@dataclass(frozen=True)
class _Component:
    """A connected group of voxels, in world coordinates, and where it meets the array's faces."""

    xyz: np.ndarray  # (n, 3) LPS mm
    labels: np.ndarray  # (n,) the label of each voxel
    edge_fraction: float  # share of its voxels on a face of the array (cut by the field of view)
    lateral_cut: tuple[bool, bool]  # touches the (low, high) face of the array axis closest to L–R

    @property
    def n(self) -> int:
        return len(self.xyz)

    @property
    def touches_edge(self) -> bool:
        return self.edge_fraction > 0

    @property
    def centroid(self) -> np.ndarray:
        return self.xyz.mean(axis=0)

    def majority(self) -> tuple[int, float]:
        values, counts = np.unique(self.labels, return_counts=True)
        best = int(np.argmax(counts))
        return int(values[best]), float(counts[best] / counts.sum())


def _components(labels: np.ndarray, values: tuple[int, ...], affine: np.ndarray, lateral_axis: int) -> list[_Component]:
    mask = np.isin(labels, values)
    cc, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    out = []
    shape = labels.shape
    for index, box in enumerate(ndimage.find_objects(cc), start=1):
        if box is None:
            continue
        local = cc[box] == index
        kk, jj, ii = np.nonzero(local)
        kk, jj, ii = kk + box[0].start, jj + box[1].start, ii + box[2].start
        ijk = np.stack([ii, jj, kk], axis=1).astype(float)
        xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
        on_face = np.zeros(len(kk), dtype=bool)
        for idx, size in zip((kk, jj, ii), shape, strict=True):
            on_face |= (idx == 0) | (idx == size - 1)
        lateral = (kk, jj, ii)[lateral_axis]
        cut = (bool(lateral.min() == 0), bool(lateral.max() == shape[lateral_axis] - 1))
        out.append(_Component(xyz, labels[kk, jj, ii], float(on_face.mean()), cut))
    return out


def _drop_small(comps: list[_Component], voxel_mm3: float, what: str, warnings: list[str]) -> list[_Component]:
    """Drop components far smaller than the typical one (median of the five largest)."""
    if not comps:
        return comps
    sizes = sorted((c.n for c in comps), reverse=True)
    reference = float(np.median(sizes[:5]))
    limit = max(MIN_COMPONENT_FRACTION * reference, MIN_COMPONENT_MM3 / voxel_mm3)
    kept = [c for c in comps if c.n >= limit]
    dropped = [c for c in comps if c.n < limit]
    if dropped:
        warnings.append(
            f"dropped {len(dropped)} small {what} component(s) ({', '.join(f'{c.n * voxel_mm3:.0f}' for c in dropped[:6])} mm³;"
            f" limit {limit * voxel_mm3:.0f} mm³) as spurious or cut by the field of view"
        )
    return kept


# ---------------------------------------------------------------------------------------------------------
# geometry helpers


def _unit(v: ArrayLike) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise ValueError("zero-length direction")
    return v / n


def _rounded(v, digits: int = 3):
    if v is None:
        return None
    return [round(float(x), digits) for x in v]


def _tuple3(v: ArrayLike) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=float).reshape(3)
    return (float(a[0]), float(a[1]), float(a[2]))


def disc_frame(normal: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(superior, posterior, left) unit vectors of a disc plane: the patient's L–R axis (LPS x) and A–P axis
    (LPS y) made orthogonal to the disc normal, so in-plane offsets stay in the disc plane."""
    n = _unit(normal)
    left = np.array([1.0, 0.0, 0.0]) - n[0] * n
    if np.linalg.norm(left) < 1e-3:  # a disc facing left-right: the spine lies across the table
        left = np.array([0.0, 0.0, 1.0]) - n[2] * n
    left = _unit(left)
    post = np.cross(n, left)
    if post[1] < 0:
        post = -post
    return n, post, left


def _fit_axis(points: np.ndarray) -> np.ndarray | None:
    """Principal direction of a cloud of centroids, or None when they do not spread along a line."""
    if len(points) < 2:
        return None
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    if s[0] < 10.0:  # the points span less than ~10 mm: no usable direction
        return None
    return vt[0]


def _disc_normal(xyz: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, bool]:
    """Smallest principal axis of the disc's voxels (a disc is a flat slab); the axis when it is not flat."""
    if len(xyz) >= 30:
        w, v = np.linalg.eigh(np.cov((xyz - xyz.mean(axis=0)).T))
        if w[0] < 0.5 * w[1]:
            n = v[:, 0]
            return (n if np.dot(n, fallback) >= 0 else -n), True
    return fallback, False


def _voxel_half_extent(affine: np.ndarray, direction: np.ndarray) -> float:
    """Half the extent of one voxel along a direction: what the outermost voxel centres leave out."""
    return 0.5 * float(np.sum(np.abs(direction @ affine[:3, :3])))


# ---------------------------------------------------------------------------------------------------------
# main entry


def landmarks_from_labels(
    labels: np.ndarray,
    affine: ArrayLike,
    *,
    canal_slab_mm: float = 3.0,
    default_foramen_offset_mm: float = DEFAULT_FORAMEN_OFFSET_MM,
) -> LandmarkSet:
    """Level landmarks from a spineseg label volume ``labels[k, j, i]`` with its voxel → LPS ``affine``.

    Level names come from the sacrum and the order of the discs along the spine, not from the label ids
    (see the module docstring); the labels only break the tie when there is no sacrum, and then the result
    is ``unsure``. A mask without disc components but with two or more of L1–L5 goes to
    :func:`landmarks_from_vertebrae` (``source="vertebrae"``).
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
    found = _levels_with_foramen_offset(drafts, measured, "disc_width", default_foramen_offset_mm)
    found.sort(key=lambda lm: LEVELS.index(lm.level))
    missing = _missing_levels(found, labels.shape, affine, axis, spacing)
    return LandmarkSet(
        levels=tuple(found),
        missing=tuple(missing),
        warnings=tuple(warnings),
        unsure=bool(unsure),
        anchor=anchor,
        axis_superior_lps=_tuple3(axis),
        disc_spacing_mm=spacing,
        source="mask",
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
    dist = [float(np.linalg.norm(a.centroid - b.centroid)) for a, b in zip(groups, groups[1:], strict=False)]
    spacing = _typical_spacing(dist)
    positions = [0]
    for i, d in enumerate(dist):
        step = max(1, int(round(d / spacing)))
        if step > 1:
            warnings.append(
                f"gap of {d:.0f} mm between disc components {i} and {i + 1} (typical {spacing:.0f} mm):"
                f" {step - 1} disc(s) missing in between"
            )
        positions.append(positions[-1] + step)
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
    reasons: list[str] = []
    confidence = 1.0

    def lower(factor: float, reason: str) -> None:
        nonlocal confidence
        confidence *= factor
        reasons.append(reason)

    if anchor == "labels":
        lower(0.6, "level name from the mask's labels (no sacrum anchor)")
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
        "confidence": float(np.clip(confidence, 0.0, 1.0)),
        "reasons": tuple(reasons),
        "mask_level": mask_level,
        "_half_width": _disc_half_width(
            g, canal if source == "canal_label" else centroid, left, lateral_column, affine
        ),
    }


def _unit_columns(affine: np.ndarray) -> np.ndarray:
    """Rows: LPS x, y, z; columns: the unit direction of array axes i, j, k."""
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return cols


def _name_of(value: int) -> str:
    return next(k for k, v in SEG_LABELS.items() if v == value)


def _voxels_xyz(labels: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kk, jj, ii = np.nonzero(mask)
    ijk = np.stack([ii, jj, kk], axis=1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3], labels[kk, jj, ii]


def _merge(comps: list[_Component]) -> _Component:
    if len(comps) == 1:
        return comps[0]
    n = np.array([c.n for c in comps], dtype=float)
    return _Component(
        np.concatenate([c.xyz for c in comps]),
        np.concatenate([c.labels for c in comps]),
        float(np.dot(n, [c.edge_fraction for c in comps]) / n.sum()),
        (any(c.lateral_cut[0] for c in comps), any(c.lateral_cut[1] for c in comps)),
    )


def _typical_spacing(distances: list[float]) -> float:
    """Median disc-to-disc distance when it is plausible for a lumbar spine, else the prior.

    With a missed disc one distance is doubled; the median of three or more is still a single step.
    """
    if len(distances) >= 2:
        med = float(np.median(distances))
        if len(distances) == 2:
            med = min(distances)  # of two, one may span a gap; the shorter is the step
        if 20.0 <= med <= 50.0:
            return med
    if len(distances) == 1 and 20.0 <= distances[0] <= 50.0:
        return distances[0]
    return PRIOR_DISC_SPACING_MM


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
    # a disc centre sits about half a disc height (≈ 5 mm) above the endplate below it
    extra = int(round((t[last] - top - 5.0) / spacing))
    if extra < 0:
        extra = 0
    if extra > 1:
        warnings.append(
            f"the lowest disc is {t[last] - top:.0f} mm above the sacrum (about {extra} discs): the sacrum is not trusted"
        )
        return "none", 0, True
    if extra == 1:
        warnings.append("no disc component just above the sacrum: l5_s1 missing from the mask")
    offset = (len(LEVELS) - 1 - extra) - positions[last]
    fragments = [ts for ts in small_t if ts < top - 5.0]
    if fragments:
        warnings.append(
            f"{len(fragments)} small disc fragment(s) below the sacrum's upper endplate: the sacrum may be a"
            " mislabelled L5 (unsure)"
        )
        return "sacrum", offset, True
    return "sacrum", offset, False


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


def _levels_with_foramen_offset(
    drafts: list[dict], half_widths_mm: list[float], width_source: str, default_offset_mm: float
) -> list[LevelLandmark]:
    """The drafts as landmarks sharing one foramen offset: from the median measured half-width (one value
    per study, because a single width is quantised by the sagittal slice spacing), else the default."""
    if half_widths_mm:
        offset_mm, source = _foramen_offset(float(np.median(half_widths_mm))), width_source
    else:
        offset_mm, source = default_offset_mm, "default"
    return [LevelLandmark(**d, foramen_offset_mm=offset_mm, foramen_offset_source=source) for d in drafts]


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


# ---------------------------------------------------------------------------------------------------------
# landmarks from vertebral bodies (masks without discs, e.g. MyoSegmenTUM)


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
                f"{prev.name} and {body.name} lie at one height along the spine: kept {big.name} (larger), dropped {small.name}"
            )
            kept[-1] = big
        else:
            kept.append(body)
    dist = [float(np.linalg.norm(a.centroid - b.centroid)) for a, b in zip(kept, kept[1:], strict=False)]
    spacing = _typical_spacing(dist)
    positions = [0]
    for a, b, d in zip(kept[:-1], kept[1:], dist, strict=True):
        step = max(1, int(round(d / spacing)))
        if step > 1:
            warnings.append(
                f"gap of {d:.0f} mm between {a.name} and {b.name} (typical {spacing:.0f} mm):"
                f" {step - 1} vertebra(e) missing in between"
            )
        positions.append(positions[-1] + step)
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
        warnings.append(f"sacrum label beside or above {lowest.name}, the lowest vertebra (around {centre} mm): ignored")
    under = foot & (a <= lowest.bottom_mm)
    if np.count_nonzero(under) < 20:
        warnings.append(f"no sacrum under {lowest.name}, the lowest vertebra: the sacrum label is not trusted as the anchor")
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
                f"the sacrum label under {lowest.name} holds a body above a {heights[gaps[0]] - heights[gaps[0] + 1]:.0f} mm"
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
) -> LandmarkSet:
    """:func:`landmarks_from_vertebrae` on components already found (``landmarks_from_labels`` has them)."""
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
            below = (lower.centroid, lower.endplate(+1), lower.depth_mm, lower.label, lower.comp)
        elif li == len(LEVELS) - 1 and top is not None and top.extra == 0:
            below = (top.s1_centroid, top.endplate, upper.depth_mm, SACRUM_LABEL, sacrum)
        else:
            continue
        drafts.append(
            _vertebra_level_draft(
                level, upper, *below, anchor, spacing, canal_xyz, canal_slab_mm, canal_behind_body_mm
            )
        )

    widths = [body.half_width_mm for body in named.values() if body.half_width_mm is not None]
    found = _levels_with_foramen_offset(drafts, widths, "body_width", default_foramen_offset_mm)
    no_sacrum: str | None = None  # why there is no body below L5 (None: the sacrum is there)
    if sacrum is None:
        no_sacrum = "no sacrum in the mask"
    elif top is None:
        no_sacrum = "the sacrum label is not under the lowest vertebra (see warnings)"
    missing = _missing_vertebra_levels(
        {lm.level for lm in found}, named, no_sacrum, labels.shape, affine, axis, spacing
    )
    return LandmarkSet(
        levels=tuple(found),
        missing=tuple(missing),
        warnings=tuple(warnings),
        unsure=bool(unsure),
        anchor=anchor,
        axis_superior_lps=_tuple3(axis),
        disc_spacing_mm=spacing,
        source="vertebrae",
    )


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
    reasons: list[str] = []
    confidence = 1.0

    def lower(factor: float, reason: str) -> None:
        nonlocal confidence
        confidence *= factor
        reasons.append(reason)

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
            lower(0.6, f"{name} cut by the field of view ({comp.edge_fraction:.0%} of it on the edge): disc point biased")
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
        "confidence": float(np.clip(confidence, 0.0, 1.0)),
        "reasons": tuple(reasons),
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
            expected = named[nearest].centroid + (nearest - k) * spacing * axis
            where = np.round(expected, 1).tolist()
            if _inside_field_of_view(expected, shape, affine):
                parts.append(f"no {name} in the mask (expected about {where} mm, inside the field of view: not segmented)")
            else:
                parts.append(f"no {name} in the mask (expected about {where} mm, outside the field of view)")
        upper, lower = VERTEBRA_NAMES[li], "S1" if li + 1 == len(LEVELS) else VERTEBRA_NAMES[li + 1]
        needs = "the bodies above and below it" if len(sides) == 2 else f"the body {sides[0]} it"
        missing.append(MissingLevel(level, f"{'; '.join(parts)}: {upper}/{lower} needs {needs}"))
    return missing


# ---------------------------------------------------------------------------------------------------------
# landmarks from points (competition keypoints, truth files)


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
            raise ValueError(f"unknown level {level!r}; valid: {list(LEVELS)}")
    order = [lv for lv in LEVELS if lv in disc_xyz_lps_mm]
    if not order:
        raise ValueError(f"no points given; expected some of {list(LEVELS)}")
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
