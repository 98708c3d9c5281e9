"""Planes cut through a label volume in patient space: the mid-sagittal plane of one level (axes posterior
and superior of its disc) or its disc plane (posterior and left), sampled on a square millimetre grid.

Measuring on a reformat, not on the stack's own rows and columns, makes every number independent of how
the series was acquired (pixel spacing, an oblique plane, a spine tilted in the image): a canal diameter is
measured along the disc's own antero-posterior axis, in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from spine_seg.core import geometry

#: Structure classes the measurements read (the base model's scheme; other label maps are mapped onto it).
BACKGROUND, VERTEBRA, SACRUM, DISC, CANAL = 0, 1, 2, 3, 4
#: Marks a sample outside the imaged volume.
OUTSIDE = 255
#: Grid step of the reformats: a quarter of a millimetre keeps the quantisation far below the source pixels.
STEP_MM = 0.25


@dataclass(frozen=True)
class Plane:
    """A plane through ``centre`` spanned by the unit vectors ``eu`` (columns) and ``ev`` (rows), sampled at
    ``STEP_MM`` over ``u_mm`` × ``v_mm``; ``classes`` [v, u] holds structure classes (OUTSIDE off the volume),
    ``k`` [v, u] the stack slice each sample came from (nearest), ``image`` [v, u] the pixels if given."""

    centre: np.ndarray
    eu: np.ndarray
    ev: np.ndarray
    u0: float
    v0: float
    classes: np.ndarray
    k: np.ndarray
    image: np.ndarray | None

    def col(self, u_mm: float) -> int:
        return int(round((u_mm - self.u0) / STEP_MM))

    def row(self, v_mm: float) -> int:
        return int(round((v_mm - self.v0) / STEP_MM))

    def u_of(self, col: float) -> float:
        return self.u0 + col * STEP_MM

    def v_of(self, row: float) -> float:
        return self.v0 + row * STEP_MM

    def world(self, u_mm: float, v_mm: float) -> tuple[float, float, float]:
        x, y, z = (float(c) for c in self.centre + u_mm * self.eu + v_mm * self.ev)
        return x, y, z

    def slice_at(self, u_mm: float, v_mm: float) -> int | None:
        r, c = self.row(v_mm), self.col(u_mm)
        if 0 <= r < self.k.shape[0] and 0 <= c < self.k.shape[1] and self.classes[r, c] != OUTSIDE:
            return int(self.k[r, c])
        return None


def cut_plane(
    classes_kji: np.ndarray,
    affine: ArrayLike,
    centre: ArrayLike,
    eu: ArrayLike,
    ev: ArrayLike,
    u_mm: tuple[float, float],
    v_mm: tuple[float, float],
    image_kji: np.ndarray | None = None,
) -> Plane:
    """Sample ``classes_kji`` (nearest) and ``image_kji`` (linear) on a plane; samples off the volume are
    ``OUTSIDE``. A single-slice volume (a 2-D image) is sampled in its own plane."""
    centre = np.asarray(centre, dtype=float)
    eu, ev = np.asarray(eu, dtype=float), np.asarray(ev, dtype=float)
    us = np.arange(u_mm[0], u_mm[1] + STEP_MM / 2, STEP_MM)
    vs = np.arange(v_mm[0], v_mm[1] + STEP_MM / 2, STEP_MM)
    xyz = centre + us[None, :, None] * eu + vs[:, None, None] * ev
    ijk = geometry.world_to_voxel(affine, xyz)
    kji = np.moveaxis(ijk[..., ::-1], -1, 0)  # (3, v, u) in array order
    shape = np.asarray(classes_kji.shape, dtype=float).reshape(3, 1, 1)
    inside = np.all((kji >= -0.5) & (kji <= shape - 0.5), axis=0)
    nearest = np.clip(np.rint(kji), 0, shape - 1).astype(np.intp)
    cls = classes_kji[nearest[0], nearest[1], nearest[2]].astype(np.uint8)
    cls[~inside] = OUTSIDE
    img = None
    if image_kji is not None:
        img = ndimage.map_coordinates(np.asarray(image_kji, dtype=np.float32), kji, order=1, mode="nearest")
        img[~inside] = np.nan
    return Plane(centre, eu, ev, float(us[0]), float(vs[0]), cls, nearest[0], img)


def runs(row: np.ndarray) -> list[tuple[int, int]]:
    """The [start, end) index ranges where a boolean row is True."""
    padded = np.concatenate(([False], np.asarray(row, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def run_near(row: np.ndarray, at: float, max_gap: float) -> tuple[int, int] | None:
    """The run of ``row`` containing index ``at``, else the nearest one within ``max_gap`` indices."""
    best: tuple[float, tuple[int, int]] | None = None
    for a, b in runs(row):
        gap = 0.0 if a <= at < b else min(abs(at - a), abs(at - (b - 1)))
        if gap <= max_gap and (best is None or gap < best[0]):
            best = (gap, (a, b))
    return None if best is None else best[1]


def component_near(
    mask: np.ndarray, row: float, col: float, max_gap_px: float, largest: bool = False
) -> np.ndarray | None:
    """The 8-connected component of a 2-D mask holding (row, col), else the nearest within ``max_gap_px``;
    ``largest``: the largest of those within ``max_gap_px`` (a bone label broken into a body and specks)."""
    cc, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if not n:
        return None
    if largest:
        rr, cs = np.nonzero(cc)
        ids = cc[rr, cs]
        d2 = (rr - row) ** 2 + (cs - col) ** 2
        near = np.zeros(n + 1, bool)
        near[np.unique(ids[d2 <= max_gap_px**2])] = True
        sizes = np.bincount(ids, minlength=n + 1) * near
        return cc == int(np.argmax(sizes)) if sizes.max() > 0 else None
    r, c = int(round(row)), int(round(col))
    if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and cc[r, c]:
        return cc == cc[r, c]
    rr, cs = np.nonzero(cc)
    d2 = (rr - row) ** 2 + (cs - col) ** 2
    i = int(np.argmin(d2))
    if d2[i] > max_gap_px**2:
        return None
    return cc == cc[rr[i], cs[i]]


def touches_edge(component: np.ndarray, classes: np.ndarray) -> bool:
    """Whether a component reaches the grid's border or a sample off the volume: then it is cut, not whole."""
    if component[0].any() or component[-1].any() or component[:, 0].any() or component[:, -1].any():
        return True
    grown = ndimage.binary_dilation(component, structure=np.ones((3, 3), dtype=bool))
    return bool(np.any(grown & (classes == OUTSIDE)))
