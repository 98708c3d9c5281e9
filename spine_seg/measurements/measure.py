"""Measurements per level from a label volume and its landmarks: the spinal canal, the discs, the vertebral
bodies, listhesis and lordosis, in mm, mm² and degrees (docs/measurements.md defines each).

Every measurement is taken on the level's **mid-sagittal plane**: the plane through the level's canal point
(which the landmarks put on the study's midline) spanned by the disc's posterior and superior axes, so a
diameter is read along the disc's own antero-posterior axis, a height along its normal. The canal's
cross-section is read on the disc plane itself. Only the segmented series' own pixels are read (the disc's
signal against the CSF's), never another series'.

A structure that runs off the image, a label that is missing where it should be, or a single 2-D slice where
a cross-section needs several gives an invalid measurement with its reason, never a number.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import BASE_LABELS
from spine_seg.landmarks.frame import disc_frame
from spine_seg.landmarks.types import (
    LOWER_VERTEBRA,
    PRIOR_DISC_SPACING_MM,
    UPPER_VERTEBRA,
    VERTEBRA_NAMES,
    LandmarkSet,
    LevelLandmark,
)
from spine_seg.measurements.plane import (
    CANAL,
    DISC,
    OUTSIDE,
    SACRUM,
    STEP_MM,
    VERTEBRA,
    Plane,
    component_near,
    cut_plane,
    run_near,
    touches_edge,
)
from spine_seg.measurements.types import CanalProfile, Measurement, SiteMeasurements, SpineMeasurements, invalid

#: Half the band of rows (mm) over which a diameter is taken (its median): a single row is one pixel's luck.
BAND_MM = 1.0
#: How far (mm) from where the landmarks expect it a canal or disc may be found before it counts as missing.
SEARCH_MM = 10.0
#: Where along the disc's antero-posterior extent its anterior, middle and posterior heights are read.
HEIGHT_FRACTIONS: dict[str, float] = {"anterior": 0.15, "middle": 0.5, "posterior": 0.85}
#: Rows (mm from the endplate) where a body's posterior wall is fitted for listhesis: clear of the rounded
#: corner, short of the mid-body where the basivertebral vein notches the wall.
WALL_BAND_MM = (2.0, 8.0)
#: A posterior wall scattering more than this (RMS, mm) about its line is a ragged label, not a wall.
WALL_MAX_RMS_MM = 1.0
#: Rows whose posterior end lies further than this (mm) from the wall's line are left out of its fit.
WALL_OUTLIER_MM = 2.0
#: A canal interrupted at a disc over at most this length (mm), with canal above and below it, is read as
#: CSF obliterated by the narrowing (diameter 0), not as a missing label.
MAX_OBLITERATION_MM = 12.0
#: An endplate line whose boundary points scatter more than this (RMS, mm), or that tilts more than this
#: against the neighbouring disc's plane, is a label fragment: the angle it gives is not reported.
ENDPLATE_MAX_RMS_MM = 1.5
ENDPLATE_MAX_TILT_DEG = 25.0
#: Half the antero-posterior reach (mm) of the profile's cuts around each canal point: a canal is under 25 mm deep.
PROFILE_HALF_MM = 25.0
#: A diameter counts only where the canal label runs on this far (mm) above and below it.
CANAL_THROUGH_MM = 8.0
#: Why the dural sac's area on the Axial T2 is not measured: spineseg segments sagittal series only.
NO_AXIAL_SEGMENTATION = (
    "not measured: no segmentation of the Axial T2's dural sac (the base model segments sagittal series)"
)
NO_AXIAL_SERIES = "not measured: the study has no Axial T2"
#: Profile step along the canal (mm).
PROFILE_STEP_MM = 2.0


def structure_classes(labels: ArrayLike, label_names: Mapping[int, str]) -> np.ndarray:
    """Any spineseg label map (per-level ``L1``… ``disc_l4_l5``, or the base model's ``vertebra``/``disc``)
    → the base scheme's structure classes, which is all a measurement needs."""
    labels = np.asarray(labels)
    lut = np.zeros(max([int(v) for v in label_names] + [int(labels.max()) if labels.size else 0]) + 1, np.uint8)
    for value, name in label_names.items():
        if name in BASE_LABELS:
            lut[int(value)] = BASE_LABELS[name]
        elif name.startswith("disc"):
            lut[int(value)] = DISC
        elif name in VERTEBRA_NAMES[:-1] or name in ("T11", "T12"):
            lut[int(value)] = VERTEBRA
    return lut[labels]


@dataclass(frozen=True)
class _Site:
    """A measurement site: its centre on the midline, its frame (superior n, posterior p, left l), the
    canal's expected offset along p, and the mid-sagittal plane cut there."""

    name: str
    centre: np.ndarray
    n: np.ndarray
    p: np.ndarray
    l: np.ndarray  # noqa: E741 - the frame's left axis, as in landmarks.frame
    canal_u: float
    plane: Plane


def _unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.linalg.norm(v))


class _Volume:
    """The label volume's structure classes, its affine, its pixels (optional) and its slice count."""

    def __init__(self, classes: np.ndarray, affine: np.ndarray, image: np.ndarray | None, axis: np.ndarray | None):
        self.classes, self.affine, self.image = classes, np.asarray(affine, float), image
        self.n_slices = int(classes.shape[0])
        self.slice_normal = _unit(self.affine[:3, 2])
        self.axis = axis  # the spine's superior direction, where the landmarks fitted one
        self.csf_threshold, self.csf_reason = csf_threshold(classes, image)

    def canal(self, site: _Site, through: bool = True) -> dict[str, Measurement]:
        """The canal's diameters at a site (label; CSF where the image allows, else why not); ``through``: only
        where the label runs on above and below (the profile's short cuts skip that check)."""
        out = _canal_ap(site, 0.0, self.csf_threshold, through)
        if "csf_ap_mm" not in out and self.image is not None:
            out["csf_ap_mm"] = invalid("csf_ap_mm", "mm", self.csf_reason or "no CSF threshold")
        return out

    def in_plane(self, normal: np.ndarray, fallback: np.ndarray | None) -> np.ndarray:
        """A disc normal fit to measure with: on a single 2-D slice the landmarks' normal may point across
        the slice (a disc one slice thick is thinnest that way); keep its in-plane part, or the spine's axis."""
        normal = _unit(np.asarray(normal, float))
        if self.n_slices >= 3:
            return normal
        flat = normal - float(normal @ self.slice_normal) * self.slice_normal
        if np.linalg.norm(flat) > 0.5:
            return _unit(flat)
        for alt in (fallback, self.axis):
            if alt is not None:
                alt = np.asarray(alt, float) - float(np.asarray(alt, float) @ self.slice_normal) * self.slice_normal
                if np.linalg.norm(alt) > 0.5:
                    return _unit(alt)
        return flat if np.linalg.norm(flat) > 1e-6 else np.array([0.0, 0.0, 1.0])

    def site(
        self,
        name: str,
        centre: np.ndarray,
        normal: np.ndarray,
        canal_xyz: np.ndarray,
        fallback: np.ndarray | None = None,
        align_to_disc: bool = False,
    ) -> _Site:
        """The site's frame and mid-sagittal plane; ``align_to_disc`` turns the frame to the disc's own long
        axis in that plane (its principal direction), where the landmarks' normal is only approximate."""
        n, p, l = disc_frame(self.in_plane(normal, fallback))  # noqa: E741
        centre = centre + float((canal_xyz - centre) @ l) * l  # onto the midline plane through the canal point
        if align_to_disc:  # on a small labels-only cut first: the full one is cut once, in the final frame
            near = cut_plane(self.classes, self.affine, centre, p, n, (-30.0, 30.0), (-12.0, 12.0))
            disc = component_near(near.classes == DISC, near.row(0.0), near.col(0.0), SEARCH_MM / STEP_MM)
            if disc is not None and disc.sum() > 50:
                rows, cols = np.nonzero(disc)
                uv = np.stack([cols - cols.mean(), rows - rows.mean()])
                w, vecs = np.linalg.eigh(np.cov(uv))
                if w[1] > 4 * w[0]:  # elongated: its long axis is the disc plane
                    major = vecs[:, 1] if vecs[0, 1] >= 0 else -vecs[:, 1]
                    tilt = float(np.arctan2(major[1], major[0]))
                    if abs(np.degrees(tilt)) < 30.0:
                        n = _unit(np.cos(tilt) * n - np.sin(tilt) * p)
                        n, p, l = disc_frame(n)  # noqa: E741
        plane = cut_plane(self.classes, self.affine, centre, p, n, (-45.0, 45.0), (-30.0, 30.0), self.image)
        return _Site(name, centre, n, p, l, float((canal_xyz - centre) @ p), plane)


def _canal_ap(
    site: _Site, v_mm: float = 0.0, csf_threshold: float | None = None, through: bool = True
) -> dict[str, Measurement]:
    """The canal's antero-posterior diameter on the site's row ``v_mm`` (median over ±BAND_MM): of its label
    (``canal_ap_mm``) and, on a T2-weighted image with ``csf_threshold``, of the bright CSF inside it
    (``csf_ap_mm``: first to last sample above the threshold; the dural sac as a reader sees it)."""
    pl = site.plane
    canal = pl.classes == CANAL
    lengths, ends, csf, csf_ends = [], [], [], []
    use_csf = csf_threshold is not None and pl.image is not None
    for r in range(pl.row(v_mm - BAND_MM), pl.row(v_mm + BAND_MM) + 1):
        if not 0 <= r < canal.shape[0]:
            continue
        run = run_near(canal[r], pl.col(site.canal_u), SEARCH_MM / STEP_MM)
        if run is None:
            continue
        a, b = run
        if a == 0 or b == canal.shape[1] or OUTSIDE in pl.classes[r, max(a - 1, 0) : b + 1]:
            return _both_invalid(use_csf, "the canal runs off the image at this level")
        lengths.append((b - a) * STEP_MM)
        ends.append((pl.u_of(a - 0.5), pl.u_of(b - 0.5)))
        if use_csf:
            assert pl.image is not None
            bright = np.flatnonzero(pl.image[r, a:b] > csf_threshold)
            csf.append((bright[-1] - bright[0] + 1) * STEP_MM if len(bright) else 0.0)
            csf_ends.append((pl.u_of(a + bright[0] - 0.5), pl.u_of(a + bright[-1] + 0.5)) if len(bright) else None)
    k = pl.slice_at(site.canal_u, v_mm)
    if not lengths:
        if k is None:
            return _both_invalid(use_csf, "level outside the field of view")
        if _obliterated(site, v_mm):
            c = pl.world(site.canal_u, v_mm)
            why = "canal label interrupted here: CSF obliterated"
            zero = {"canal_ap_mm": Measurement("canal_ap_mm", 0.0, "mm", True, why, (c, c), k)}
            if use_csf:
                zero["csf_ap_mm"] = Measurement("csf_ap_mm", 0.0, "mm", True, why, (c, c), k)
            return zero
        return _both_invalid(use_csf, "no canal label at this level (label incomplete)")
    if len(lengths) <= int(BAND_MM / STEP_MM):
        return _both_invalid(use_csf, "canal label frayed at this level (label incomplete)")
    if through and not _passes_through(site, v_mm):
        return _both_invalid(
            use_csf, f"the canal label ends within {CANAL_THROUGH_MM:.0f} mm of here (label incomplete)"
        )
    i = int(np.argsort(lengths)[len(lengths) // 2])
    out = {
        "canal_ap_mm": Measurement(
            "canal_ap_mm",
            float(np.median(lengths)),
            "mm",
            points_lps_mm=(pl.world(ends[i][0], v_mm), pl.world(ends[i][1], v_mm)),
            slice_k=k,
        )
    }
    if use_csf:
        j = int(np.argsort(csf)[len(csf) // 2])
        e = csf_ends[j]
        pts = () if e is None else (pl.world(e[0], v_mm), pl.world(e[1], v_mm))
        out["csf_ap_mm"] = Measurement("csf_ap_mm", float(np.median(csf)), "mm", points_lps_mm=pts, slice_k=k)
    return out


def _both_invalid(use_csf: bool, reason: str) -> dict[str, Measurement]:
    out = {"canal_ap_mm": invalid("canal_ap_mm", "mm", reason)}
    if use_csf:
        out["csf_ap_mm"] = invalid("csf_ap_mm", "mm", reason)
    return out


def csf_threshold(classes: np.ndarray, image: np.ndarray | None) -> tuple[float | None, str | None]:
    """Half-way between the canal's bright CSF (95th percentile inside the canal label) and the vertebral
    bodies' marrow (median): a sample above it is CSF. None, with the reason, where the CSF is not brighter
    than the marrow by half again (not a T2-weighted image) or a label is missing."""
    if image is None:
        return None, "no pixels given"
    canal, body = image[classes == CANAL], image[classes == VERTEBRA]
    if canal.size < 50 or body.size < 50:
        return None, "too little canal or vertebra label to calibrate the CSF's brightness"
    bright, marrow = float(np.percentile(canal, 95)), float(np.median(body))
    if not bright > 1.5 * marrow:
        return None, "CSF not brighter than the bone marrow: not a T2-weighted image"
    return (bright + marrow) / 2, None


def _passes_through(site: _Site, v_mm: float) -> bool:
    """Canal label CANAL_THROUGH_MM above and below the row: the canal passes the level, it does not end there
    (the tip of a label cut short is thin, and is not a narrowing)."""
    pl = site.plane
    canal = pl.classes == CANAL
    col, reach = pl.col(site.canal_u), SEARCH_MM / STEP_MM
    rows = (pl.row(v_mm + CANAL_THROUGH_MM), pl.row(v_mm - CANAL_THROUGH_MM))
    return all(0 <= r < canal.shape[0] and run_near(canal[r], col, reach) is not None for r in rows)


def _obliterated(site: _Site, v_mm: float) -> bool:
    """Canal above and below the row within MAX_OBLITERATION_MM / 2, none on it: a focal interruption."""
    pl = site.plane
    canal = pl.classes == CANAL
    col, reach = pl.col(site.canal_u), SEARCH_MM / STEP_MM

    def has(v: float) -> bool:
        r = pl.row(v)
        return 0 <= r < canal.shape[0] and run_near(canal[r], col, reach) is not None

    half = MAX_OBLITERATION_MM / 2
    above = any(has(v_mm + d) for d in np.arange(1.0, half + 0.1, 0.5))
    below = any(has(v_mm - d) for d in np.arange(1.0, half + 0.1, 0.5))
    return above and below


def _canal_csa(vol: _Volume, site: _Site) -> Measurement:
    """The canal's cross-sectional area on the disc plane (posterior × left), from the sagittal stack."""
    if vol.n_slices < 3:
        return invalid("canal_csa_mm2", "mm2", f"{vol.n_slices} sagittal slice(s): no left-right extent to measure")
    pl = cut_plane(vol.classes, vol.affine, site.centre, site.p, site.l, (-45.0, 45.0), (-25.0, 25.0))
    comp = component_near(pl.classes == CANAL, pl.row(0.0), pl.col(site.canal_u), SEARCH_MM / STEP_MM)
    if comp is None:
        return invalid("canal_csa_mm2", "mm2", "no canal label on the disc plane (label incomplete)")
    if touches_edge(comp, pl.classes):
        return invalid("canal_csa_mm2", "mm2", "the canal runs off the image on the disc plane")
    if len(np.unique(pl.k[comp])) < 3:
        return invalid("canal_csa_mm2", "mm2", "the canal spans fewer than 3 sagittal slices: too coarse for an area")
    return Measurement("canal_csa_mm2", float(comp.sum()) * STEP_MM**2, "mm2", slice_k=pl.slice_at(site.canal_u, 0.0))


def _column_extent(comp: np.ndarray, col: int) -> tuple[int, int] | None:
    rows = np.flatnonzero(comp[:, col]) if 0 <= col < comp.shape[1] else np.array([], int)
    return (int(rows.min()), int(rows.max()) + 1) if len(rows) else None


def _disc_heights(pl: Plane, comp: np.ndarray) -> dict[str, Measurement]:
    """The disc's anterior, middle and posterior heights, along the plane's rows, at HEIGHT_FRACTIONS of its
    antero-posterior extent on the rows within ±2 mm of the disc's centre row."""
    lo, hi = max(pl.row(-2.0), 0), min(pl.row(2.0) + 1, comp.shape[0])
    cols = np.flatnonzero(comp[lo:hi].any(axis=0))
    if not len(cols):
        cols = np.flatnonzero(comp.any(axis=0))
    a, b = int(cols.min()), int(cols.max())
    out = {}
    for where, f in HEIGHT_FRACTIONS.items():
        c = int(round(a + f * (b - a)))
        ext = _column_extent(comp, c)
        name = f"disc_height_{where}_mm"
        if ext is None:
            out[name] = invalid(name, "mm", "no label in that column")
            continue
        u = pl.u_of(c)
        out[name] = Measurement(
            name,
            (ext[1] - ext[0]) * STEP_MM,
            "mm",
            points_lps_mm=(pl.world(u, pl.v_of(ext[0] - 0.5)), pl.world(u, pl.v_of(ext[1] - 0.5))),
            slice_k=pl.slice_at(u, pl.v_of((ext[0] + ext[1]) / 2)),
        )
    return out


def _body_heights(site: _Site, spacing_mm: float) -> dict[str, Measurement]:
    """A vertebral body's anterior, middle and posterior heights: in each column the run of bone through the
    body's centre row (neighbouring bodies that touch through a bridge elsewhere do not join it), at
    HEIGHT_FRACTIONS of the body's antero-posterior extent on that row."""
    pl = site.plane
    bone = pl.classes == VERTEBRA
    names = {w: f"body_height_{w}_mm" for w in HEIGHT_FRACTIONS}
    r0 = pl.row(0.0)
    run = run_near(bone[r0], pl.col(0.0), 8.0 / STEP_MM)
    if run is None:
        return {n: invalid(n, "mm", "no vertebral body label here") for n in names.values()}
    a, b = run
    if a == 0 or b == bone.shape[1] or OUTSIDE in pl.classes[r0, max(a - 1, 0) : b + 1]:
        return {n: invalid(n, "mm", "the body runs off the image") for n in names.values()}
    out = {}
    for where, f in HEIGHT_FRACTIONS.items():
        c = int(round(a + f * (b - 1 - a)))
        col = run_near(bone[:, c], r0, 0)
        name = names[where]
        if col is None:
            out[name] = invalid(name, "mm", "no label in that column")
            continue
        lo, hi = col
        if lo == 0 or hi == bone.shape[0] or OUTSIDE in pl.classes[max(lo - 1, 0) : hi + 1, c]:
            out[name] = invalid(name, "mm", "the body runs off the image")
            continue
        height = (hi - lo) * STEP_MM
        if height > 0.9 * spacing_mm:
            out[name] = invalid(name, "mm", "bodies merge in the label (no disc between them)")
            continue
        u = pl.u_of(c)
        out[name] = Measurement(
            name,
            height,
            "mm",
            points_lps_mm=(pl.world(u, pl.v_of(lo - 0.5)), pl.world(u, pl.v_of(hi - 0.5))),
            slice_k=pl.slice_at(u, 0.0),
        )
    return out


def _disc(site: _Site) -> tuple[dict[str, Measurement], np.ndarray | None]:
    pl = site.plane
    comp = component_near(pl.classes == DISC, pl.row(0.0), pl.col(0.0), SEARCH_MM / STEP_MM)
    names = [f"disc_height_{w}_mm" for w in HEIGHT_FRACTIONS]
    if comp is None:
        return {n: invalid(n, "mm", "no disc label at this level (collapsed or not segmented)") for n in names}, None
    if touches_edge(comp, pl.classes):
        return {n: invalid(n, "mm", "the disc runs off the image") for n in names}, None
    return _disc_heights(pl, comp), comp


def _signal_ratio(site: _Site, disc: np.ndarray | None) -> Measurement:
    """Mean signal of the disc's inner 70 % (antero-posterior) over that of the CSF within 20 mm: the quantity
    behind Pfirrmann's grades on T2 (a bright nucleus is near the CSF's brightness, a dark one far below)."""
    pl, name = site.plane, "disc_csf_signal_ratio"
    if pl.image is None:
        return invalid(name, "1", "no pixels given")
    if disc is None:
        return invalid(name, "1", "no disc label at this level")
    cols = np.flatnonzero(disc.any(axis=0))
    a, b = cols.min(), cols.max()
    inner = disc.copy()
    inner[:, : int(a + 0.15 * (b - a))] = False
    inner[:, int(b - 0.15 * (b - a)) + 1 :] = False
    rows = slice(max(pl.row(-20.0), 0), pl.row(20.0) + 1)
    csf = np.zeros_like(disc)
    csf[rows] = pl.classes[rows] == CANAL
    if inner.sum() < 20 or csf.sum() < 20:
        return invalid(name, "1", "too little disc or CSF label on the mid-sagittal plane")
    d, c = float(np.nanmean(pl.image[inner])), float(np.nanmean(pl.image[csf]))
    if not np.isfinite(d) or not np.isfinite(c) or c <= 0:
        return invalid(name, "1", "no CSF signal to compare with")
    return Measurement(name, d / c, "1", slice_k=pl.slice_at(0.0, 0.0))


@dataclass(frozen=True)
class _Wall:
    """A body's posterior wall next to a disc, as a line u = slope · v + offset fitted over WALL_BAND_MM rows
    (the radiologist's posterior vertebral line), and the body's median antero-posterior length there."""

    slope: float
    offset: float
    length_mm: float
    rms_mm: float

    def at(self, v_mm: float) -> float:
        return self.slope * v_mm + self.offset


def _wall(pl: Plane, mask: np.ndarray, rows: range, col: int) -> _Wall | str:
    """The posterior wall of the run nearest ``col`` over ``rows``; the reason where it cannot be read."""
    vs, backs, lengths = [], [], []
    for r in rows:
        if not 0 <= r < mask.shape[0]:
            continue
        run = run_near(mask[r], col, 8.0 / STEP_MM)
        if run is None:
            continue
        a, b = run
        if a == 0 or b == mask.shape[1] or OUTSIDE in pl.classes[r, max(a - 1, 0) : b + 1]:
            return "runs off the image"
        vs.append(pl.v_of(r))
        backs.append(pl.u_of(b - 0.5))
        lengths.append((b - a) * STEP_MM)
    if len(backs) < 0.6 * len(rows):
        return "not found next to the disc"
    v, u = np.asarray(vs), np.asarray(backs)
    keep = np.abs(u - np.median(u)) <= WALL_OUTLIER_MM  # a row whose run reaches into a pedicle or a speck
    for _ in range(2):
        if keep.sum() < 0.6 * len(rows):
            return "ragged in the label"
        slope, offset = np.polyfit(v[keep], u[keep], 1)
        keep = np.abs(u - (slope * v + offset)) <= WALL_OUTLIER_MM
    if keep.sum() < 0.6 * len(rows):
        return "ragged in the label"
    rms = float(np.sqrt(np.mean((u[keep] - (slope * v[keep] + offset)) ** 2)))
    return _Wall(float(slope), float(offset), float(np.median(np.asarray(lengths)[keep])), rms)


def _listhesis(site: _Site, disc: np.ndarray | None) -> dict[str, Measurement]:
    """Translation of the upper vertebra on the lower: their posterior walls (each a line fitted over
    WALL_BAND_MM of rows next to the disc) extrapolated to the disc's mid-plane, the distance along the disc
    plane (+ = the upper one slipped forward), in mm and in % of the lower body's antero-posterior length
    (Meyerding's measure)."""
    pl = site.plane
    bone = (pl.classes == VERTEBRA) | (pl.classes == SACRUM)
    names = {"listhesis_mm": "mm", "listhesis_percent": "%"}
    if disc is not None:
        cols = np.flatnonzero(disc.any(axis=0))
        mid_col = int(np.mean(cols))
        ext = _column_extent(disc, int(round(0.8 * cols.max() + 0.2 * mid_col)))
        top, bottom = (ext[1], ext[0]) if ext is not None else (pl.row(3.0), pl.row(-3.0))
    else:
        mid_col, top, bottom = pl.col(0.0), pl.row(4.0), pl.row(-4.0)
    lo, hi = (int(round(w / STEP_MM)) for w in WALL_BAND_MM)
    upper = _wall(pl, bone, range(top + lo, top + hi + 1), mid_col)
    lower = _wall(pl, bone, range(bottom - hi, bottom - lo + 1), mid_col)
    for what, wall in (("the vertebra above", upper), ("the vertebra below", lower)):
        if isinstance(wall, str):
            return {n: invalid(n, u, f"{what}: posterior wall {wall}") for n, u in names.items()}
        if wall.rms_mm > WALL_MAX_RMS_MM:
            return {n: invalid(n, u, f"{what}: posterior wall ragged in the label") for n, u in names.items()}
    assert isinstance(upper, _Wall) and isinstance(lower, _Wall)
    if lower.length_mm < 15.0:
        return {n: invalid(n, u, "the lower body is shorter than 15 mm") for n, u in names.items()}
    if not 0.6 <= upper.length_mm / lower.length_mm <= 1.6:
        return {n: invalid(n, u, "the two bodies' depths disagree: one is cut in the label") for n, u in names.items()}
    v_mid = pl.v_of((top + bottom) / 2)
    slip = lower.at(v_mid) - upper.at(v_mid)
    points = (pl.world(upper.at(v_mid), v_mid), pl.world(lower.at(v_mid), v_mid))
    k = pl.slice_at(lower.at(v_mid) - 2.0, v_mid)
    return {
        "listhesis_mm": Measurement("listhesis_mm", slip, "mm", points_lps_mm=points, slice_k=k),
        "listhesis_percent": Measurement(
            "listhesis_percent", 100.0 * slip / lower.length_mm, "%", points_lps_mm=points, slice_k=k
        ),
    }


def _endplate(site: _Site, cls: int, top: bool = True) -> tuple[np.ndarray, tuple[Any, Any]] | None:
    """The unit normal (pointing superior) of a body's superior endplate, from a line fitted to its upper
    boundary over the middle 60 % of the body's antero-posterior extent; with the line's two ends."""
    pl = site.plane
    comp = component_near(pl.classes == cls, pl.row(0.0), pl.col(0.0), 15.0 / STEP_MM, largest=True)
    if comp is None:
        return None
    r_top = int(np.flatnonzero(comp.any(axis=1)).max())
    comp[: max(r_top - int(15.0 / STEP_MM), 0)] = False  # the endplate's body: the sacrum below runs on
    if touches_edge(comp, pl.classes):
        return None
    band = comp[max(r_top - int(6.0 / STEP_MM), 0) : r_top + 1].any(axis=0)
    cols = np.flatnonzero(band)
    a, b = cols.min(), cols.max()
    sel = np.arange(int(a + 0.2 * (b - a)), int(b - 0.2 * (b - a)) + 1)
    tops = np.array([np.flatnonzero(comp[:, c]).max() if comp[:, c].any() else np.nan for c in sel], float)
    ok = np.isfinite(tops)
    if ok.sum() < 8:
        return None
    us, vs = np.array([pl.u_of(c) for c in sel[ok]]), np.array([pl.v_of(r + 0.5) for r in tops[ok]])
    slope, icpt = np.polyfit(us, vs, 1)
    rms = float(np.sqrt(np.mean((vs - (slope * us + icpt)) ** 2)))
    if rms > ENDPLATE_MAX_RMS_MM or abs(np.degrees(np.arctan(slope))) > ENDPLATE_MAX_TILT_DEG:
        return None  # a ragged or steep upper boundary: a fragment of the label, not an endplate
    normal = _unit(site.n - slope * site.p)
    return normal, (pl.world(us[0], slope * us[0] + icpt), pl.world(us[-1], slope * us[-1] + icpt))


class _Sites:
    """Where each level and each vertebra is measured, from the landmarks."""

    def __init__(self, vol: _Volume, landmarks: LandmarkSet):
        self.levels: dict[str, LevelLandmark] = {lm.level: lm for lm in landmarks.levels}
        self.spacing = landmarks.disc_spacing_mm or PRIOR_DISC_SPACING_MM
        self.vol = vol
        self.level_sites = {
            lv: vol.site(lv, lm.disc_xyz, lm.normal, lm.canal_xyz, self.tangent(lv), align_to_disc=True)
            for lv, lm in self.levels.items()
        }

    def tangent(self, level: str) -> np.ndarray | None:
        """The spine's superior direction at a level, from the disc points of its neighbours."""
        i = LEVELS.index(level)
        up = self.levels.get(LEVELS[i - 1]) if i > 0 else None
        down = self.levels.get(LEVELS[i + 1]) if i + 1 < len(LEVELS) else None
        here = self.levels[level]
        a = up.disc_xyz if up is not None else here.disc_xyz
        b = down.disc_xyz if down is not None else here.disc_xyz
        return _unit(a - b) if np.linalg.norm(a - b) > 1.0 else None

    def vertebra_site(self, name: str) -> _Site | None:
        """The site of vertebra ``name`` (L1…L5): its centroid, the mean normal of its two discs."""
        i = VERTEBRA_NAMES.index(name)
        above = LEVELS[i - 1] if i >= 1 else None
        below = LEVELS[i] if i < len(LEVELS) else None
        la, lb = self.levels.get(above) if above else None, self.levels.get(below) if below else None
        if la is None and lb is None:
            return None
        centroid: np.ndarray | None = None
        if lb is not None and lb.upper_vertebra_xyz_lps_mm is not None:
            centroid = np.asarray(lb.upper_vertebra_xyz_lps_mm, float)
        elif la is not None and la.lower_vertebra_xyz_lps_mm is not None:
            centroid = np.asarray(la.lower_vertebra_xyz_lps_mm, float)
        na = self.level_sites[la.level].n if la is not None else None
        nb = self.level_sites[lb.level].n if lb is not None else None
        if la is not None and lb is not None:
            assert na is not None and nb is not None
            normal = _unit(na + nb)
            centroid = (la.disc_xyz + lb.disc_xyz) / 2 if centroid is None else centroid
            canal = (la.canal_xyz + lb.canal_xyz) / 2
        else:
            lm = la if la is not None else lb
            assert lm is not None
            one = na if lm is la else nb
            assert one is not None
            normal = one
            sign = -1.0 if lm is la else 1.0  # the body lies below the disc above it, above the disc below it
            if centroid is None:
                centroid = lm.disc_xyz + sign * 0.5 * self.spacing * normal
            canal = lm.canal_xyz + (centroid - lm.disc_xyz) @ normal * normal
        near = la if la is not None else lb
        assert near is not None and centroid is not None
        return self.vol.site(name, centroid, normal, canal, self.tangent(near.level))


def measure_spine(
    label_volume: Any,
    landmarks: LandmarkSet,
    image_kji: np.ndarray | None = None,
    axial_reason: str = NO_AXIAL_SEGMENTATION,
) -> SpineMeasurements:
    """Measurements of every found level and vertebra (docs/measurements.md). ``label_volume``: anything with
    ``labels`` [k, j, i], ``affine`` and ``label_names``; ``image_kji``: the segmented stack's pixels on the
    same grid (for the disc's signal; None leaves that measurement invalid); ``axial_reason``: why the dural
    sac's area on the Axial T2 is not measured (``dural_sac_csa_axial_mm2``, invalid with that reason)."""
    t0 = time.perf_counter()
    labels = np.asarray(label_volume.labels)
    classes = structure_classes(labels, getattr(label_volume, "label_names", {}) or {})
    if image_kji is not None and np.shape(image_kji) != labels.shape:
        raise ValueError(f"image shape {np.shape(image_kji)} differs from the labels' {labels.shape}")
    axis = None if landmarks.axis_superior_lps is None else np.asarray(landmarks.axis_superior_lps, float)
    vol = _Volume(classes, np.asarray(label_volume.affine, float), image_kji, axis)
    warnings: list[str] = []
    if image_kji is not None and vol.csf_threshold is None:
        warnings.append(f"CSF diameters not measured: {vol.csf_reason}; canal grades from the canal label alone")
    if not landmarks.levels:
        return SpineMeasurements((), (), {}, None, ("no level found: nothing to measure",), time.perf_counter() - t0)
    sites = _Sites(vol, landmarks)
    vertebra_sites = {n: s for n in VERTEBRA_NAMES[:-1] if (s := sites.vertebra_site(n)) is not None}
    vertebrae = []
    for name, site in vertebra_sites.items():
        values: dict[str, Measurement] = vol.canal(site)
        values.update(_body_heights(site, sites.spacing))
        vertebrae.append(SiteMeasurements(name, _xyz(site.centre), values))
    by_vertebra = {v.site: v for v in vertebrae}
    levels = []
    for lv, site in sites.level_sites.items():
        values = {**vol.canal(site), "canal_csa_mm2": _canal_csa(vol, site)}
        disc_values, disc = _disc(site)
        values.update(disc_values)
        values["disc_csf_signal_ratio"] = _signal_ratio(site, disc)
        values.update(_listhesis(site, disc))
        values.update(_ratios(lv, values, by_vertebra))
        values["dural_sac_csa_axial_mm2"] = invalid("dural_sac_csa_axial_mm2", "mm2", axial_reason)
        levels.append(SiteMeasurements(lv, _xyz(site.centre), values))
    spine = {
        "lordosis_l1_s1_deg": _lordosis(sites, vertebra_sites),
        "disc_angle_l1_l2_to_l5_s1_deg": _disc_angle(sites),
    }
    profile = _profile(vol, sites)
    return SpineMeasurements(tuple(levels), tuple(vertebrae), spine, profile, tuple(warnings), time.perf_counter() - t0)


def _xyz(v: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(c) for c in v)
    return x, y, z


def _mean_valid(*ms: Measurement | None) -> float | None:
    vals = [m.value for m in ms if m is not None and m.valid and m.value is not None]
    return float(np.mean(vals)) if vals else None


def _ratios(
    level: str, values: Mapping[str, Measurement], vertebrae: Mapping[str, SiteMeasurements]
) -> dict[str, Measurement]:
    """Narrowing against the mid-vertebral canal of the bodies around the disc, and the disc-height index."""
    up, lo = vertebrae.get(UPPER_VERTEBRA[level]), vertebrae.get(LOWER_VERTEBRA[level])
    out: dict[str, Measurement] = {}
    for what in ("canal_ap", "csf_ap"):
        name, here = f"{what}_ratio", values.get(f"{what}_mm")
        if here is None:
            continue
        ref = _mean_valid(*(v.values.get(f"{what}_mm") for v in (up, lo) if v is not None))
        if not here.valid or here.value is None:
            out[name] = invalid(name, "1", f"diameter at the disc: {here.reason}")
        elif ref is None or ref <= 0:
            out[name] = invalid(name, "1", "no mid-vertebral diameter to compare with")
        else:
            out[name] = Measurement(name, here.value / ref, "1", slice_k=here.slice_k)
    csf, canal = values.get("csf_ap_mm"), values["canal_ap_mm"]
    if csf is not None:
        if not csf.valid or csf.value is None or not canal.valid or canal.value is None:
            why = csf.reason if not csf.valid else canal.reason
            out["csf_fraction"] = invalid("csf_fraction", "1", f"diameter at the disc: {why}")
        else:
            frac = 0.0 if canal.value <= 0 else min(csf.value / canal.value, 1.0)
            out["csf_fraction"] = Measurement("csf_fraction", frac, "1", slice_k=csf.slice_k)
    disc = _mean_valid(*(values[f"disc_height_{w}_mm"] for w in HEIGHT_FRACTIONS))
    body = _mean_valid(*(v.values.get("body_height_middle_mm") for v in (up, lo) if v is not None))
    if disc is None:
        out["disc_height_index"] = invalid(
            "disc_height_index", "1", values["disc_height_middle_mm"].reason or "no disc"
        )
    elif body is None or body <= 0:
        out["disc_height_index"] = invalid("disc_height_index", "1", "no vertebral body height to compare with")
    else:
        out["disc_height_index"] = Measurement("disc_height_index", disc / body, "1")
    return out


def _lordosis(sites: _Sites, vertebra_sites: Mapping[str, _Site]) -> Measurement:
    """Angle between L1's superior endplate and S1's (the sacrum's top), + for a lordosis."""
    l1, s1 = vertebra_sites.get("L1"), sites.level_sites.get("l5_s1")
    if l1 is None or s1 is None:
        return invalid("lordosis_l1_s1_deg", "deg", "L1 or L5/S1 not found")
    top = _endplate(l1, VERTEBRA)
    lm = sites.levels["l5_s1"]
    below = lm.lower_vertebra_xyz_lps_mm
    sac_centre = np.asarray(below, float) if below is not None else lm.disc_xyz - 0.4 * sites.spacing * lm.normal
    sac = sites.vol.site("sacrum", sac_centre, s1.n, lm.canal_xyz)
    bottom = _endplate(sac, SACRUM)
    if top is None or bottom is None:
        what = "L1" if top is None else "S1"
        return invalid("lordosis_l1_s1_deg", "deg", f"{what} superior endplate not whole or too ragged in the label")
    m1, m2 = top[0], bottom[0]
    angle = float(np.degrees(np.arctan2(float(np.cross(m1, m2) @ s1.l), float(m1 @ m2))))
    return Measurement("lordosis_l1_s1_deg", angle, "deg", points_lps_mm=(*top[1], *bottom[1]))


def _disc_angle(sites: _Sites) -> Measurement:
    """Angle between the L1/L2 and the L5/S1 disc planes (+ for a lordosis): lordosis read from the discs,
    where an endplate's label is too ragged for the L1–S1 angle."""
    a, b = sites.level_sites.get("l1_l2"), sites.level_sites.get("l5_s1")
    name = "disc_angle_l1_l2_to_l5_s1_deg"
    if a is None or b is None:
        return invalid(name, "deg", "L1/L2 or L5/S1 not found")
    angle = float(np.degrees(np.arctan2(float(np.cross(a.n, b.n) @ b.l), float(a.n @ b.n))))
    return Measurement(name, angle, "deg", points_lps_mm=(_xyz(a.centre), _xyz(b.centre)))


def _profile(vol: _Volume, sites: _Sites) -> CanalProfile | None:
    """The canal's AP diameter every PROFILE_STEP_MM along the polyline through the levels' canal points,
    half a disc spacing beyond the first and last."""
    lms = [sites.levels[lv] for lv in LEVELS if lv in sites.levels]
    if not lms:
        return None
    pts = [lm.canal_xyz for lm in lms]
    normals = [sites.level_sites[lm.level].n for lm in lms]
    ext = 0.5 * sites.spacing
    pts = [pts[0] + ext * normals[0], *pts, pts[-1] - ext * normals[-1]]
    normals = [normals[0], *normals, normals[-1]]
    s_mm: list[float] = []
    ap_mm: list[float | None] = []
    csf_mm: list[float | None] = []
    level_s: dict[str, float] = {}
    s0 = 0.0
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        seg = float(np.linalg.norm(b - a))
        if 1 <= i <= len(lms):
            level_s[lms[i - 1].level] = s0
        for t in np.arange(0.0, seg, PROFILE_STEP_MM):
            f = t / seg
            c = a + f * (b - a)
            n = _unit((1 - f) * normals[i] + f * normals[i + 1])
            nn, p, left = disc_frame(n)
            half = MAX_OBLITERATION_MM / 2 + 1.0
            pl = cut_plane(
                vol.classes, vol.affine, c, p, nn, (-PROFILE_HALF_MM, PROFILE_HALF_MM), (-half, half), vol.image
            )
            site = _Site("profile", c, nn, p, left, 0.0, pl)
            m = vol.canal(site, through=False)
            s_mm.append(s0 + t)
            ap_mm.append(m["canal_ap_mm"].value if m["canal_ap_mm"].valid else None)
            csf_mm.append(m["csf_ap_mm"].value if "csf_ap_mm" in m and m["csf_ap_mm"].valid else None)
        s0 += seg
    return CanalProfile(tuple(s_mm), tuple(ap_mm), level_s, tuple(csf_mm) if vol.csf_threshold is not None else None)
