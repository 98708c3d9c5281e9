"""How a synthetic study is acquired: its series (ids, sequences), the sagittal stacks' plan and geometry, and
the axial blocks angled along each disc or one stack; pure sampling and geometry, nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spine_seg.core import geometry
from spine_seg.core.constants import (
    SeriesKind,
)
from spine_seg.synthetic.anatomy import Anatomy


@dataclass
class Acquisition:
    """One series as acquired: its stacks (affine voxel → LPS, shape k, j, i) and sequence."""

    series_id: str
    kind: SeriesKind
    sequence: str  # T1, T2 or STIR
    stacks: list[tuple[np.ndarray, tuple[int, int, int]]]
    thickness_mm: float
    block_levels: list[str | None] = field(default_factory=list)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    ax, ay, az = np.radians(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _series_id(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        sid = str(int(rng.integers(10**8, 4 * 10**9)))
        if sid not in used:
            used.add(sid)
            return sid


@dataclass(frozen=True)
class SagittalPlan:
    """Slice placement shared by a study's sagittal series (scanners usually plan T1 and T2 together)."""

    n: int
    thickness_mm: float
    spacing_mm: float
    tilt: np.ndarray
    slab_offset_mm: float
    centre_offset_mm: tuple[float, float]


def _sagittal_plan(rng: np.random.Generator) -> SagittalPlan:
    """15–18 slices, 3–4 mm thick with a 0–0.5 mm gap, slightly oblique, the slab centred near the midline."""
    thickness = float(rng.choice([3.0, 3.5, 4.0]))
    return SagittalPlan(
        n=int(rng.integers(15, 19)),
        thickness_mm=thickness,
        spacing_mm=thickness + round(float(rng.uniform(0.0, 0.5)), 1),
        tilt=_rotation(rng, 2.0),
        slab_offset_mm=float(rng.uniform(-2.5, 2.5)),
        centre_offset_mm=(float(rng.uniform(-6, 6)), float(rng.uniform(-12, 8))),
    )


def _sagittal(
    anat: Anatomy,
    rng: np.random.Generator,
    matrix: int,
    sid: str,
    kind: SeriesKind,
    seq: str,
    plan: SagittalPlan,
    same_grid_as: Acquisition | None = None,
) -> Acquisition:
    """0.74–0.8 mm pixels on a rectangular FOV (rows S–I, columns A–P: spine protocols reduce the phase FOV).

    ``same_grid_as``: reuse another series' grid exactly, as protocols that copy the T1 planning to T2 do.
    """
    if same_grid_as is not None:
        return Acquisition(sid, kind, seq, list(same_grid_as.stacks), plan.thickness_mm)
    rows, cols = matrix, int(round(matrix * 0.875))
    row = plan.tilt @ anat.rotation @ np.array([0.0, 1.0, 0.0])  # along a row: posterior
    col = plan.tilt @ anat.rotation @ np.array([0.0, 0.0, -1.0])  # down a column: feet
    step = np.cross(col, row)  # towards the patient's left: instance 1 is the rightmost slice
    # the technologist fits L1 to S1 in the field of view: enlarge the pixels for a long spine if needed
    top = anat.to_world(anat.body_range("L1")[1] + 6.0, 0.0, 0.0)
    bottom = anat.to_world(anat.s_sacrum_top - 14.0, 0.0, 0.0)
    extent = float(np.dot(bottom - top, col))
    px = float(np.clip(max(rng.uniform(0.74, 0.8), extent / (rows - 8)), 0.5, 0.9))
    slack = rows * px - extent
    mid = (top + bottom) / 2
    centre = (
        mid
        + np.dot(anat.to_world(0.0, -12.0, 0.0) - mid, row) * row
        + plan.centre_offset_mm[0] * row
        + plan.centre_offset_mm[1] / 12.0 * max(slack / 2 - 2, 0) * col
        + plan.slab_offset_mm * step
    )
    centre = centre + rng.uniform(-3, 3) * row + rng.uniform(-1, 1) * min(3.0, max(slack / 2 - 2, 0)) * col
    first = centre - (cols - 1) / 2 * px * row - (rows - 1) / 2 * px * col - (plan.n - 1) / 2 * plan.spacing_mm * step
    aff = geometry.affine_from_headers(first, (*row, *col), (px, px), step * plan.spacing_mm)
    return Acquisition(sid, kind, seq, [(aff, (plan.n, rows, cols))], plan.thickness_mm)


def _axial_orientation(anat: Anatomy, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and normal of an axial plane perpendicular to the spine at ``s``."""
    up = anat.to_world(s + 1.0, 0.0, 0.0) - anat.to_world(s - 1.0, 0.0, 0.0)
    n = up / np.linalg.norm(up)
    post = np.array([0.0, 1.0, 0.0])
    col = post - np.dot(post, n) * n
    col /= np.linalg.norm(col)
    row = np.cross(col, n)
    return row, col, n


def _axial(
    anat: Anatomy, rng: np.random.Generator, matrix: int, sid: str, mode: str, covered: list[str]
) -> Acquisition:
    """Either one oblique block per covered disc (angled along it) or one stack over all covered levels."""
    px = float(rng.uniform(0.75, 0.9))
    thickness = float(rng.choice([3.5, 4.0]))
    stacks: list[tuple[np.ndarray, tuple[int, int, int]]] = []
    block_levels: list[str | None] = []
    shift = rng.uniform(-8, 8, 2)
    if mode == "blocks":
        for level in covered:
            s = anat.disc_centre_s(level) + rng.uniform(-1.0, 1.0)
            row, col, n = _axial_orientation(anat, s)
            k = int(rng.integers(3, 6))
            centre = anat.to_world(s, anat.canal_centre_v() + 18.0, 0.0) + shift[0] * row + shift[1] * col
            top = centre + (k - 1) / 2 * thickness * n
            first = top - (matrix - 1) / 2 * px * (row + col)
            stacks.append(
                (geometry.affine_from_headers(first, (*row, *col), (px, px), -n * thickness), (k, matrix, matrix))
            )
            block_levels.append(level)
    else:
        s_hi = anat.disc_centre_s(covered[0]) + 5
        s_lo = anat.disc_centre_s(covered[-1]) - 5
        row, col, n = _axial_orientation(anat, (s_hi + s_lo) / 2)
        spacing = thickness + round(float(rng.uniform(0.3, 0.8)), 1)
        top_c = anat.to_world(s_hi, anat.canal_centre_v() + 18.0, 0.0)
        bot_c = anat.to_world(s_lo, anat.canal_centre_v() + 18.0, 0.0)
        k = int(np.ceil(np.dot(top_c - bot_c, n) / spacing)) + 1
        first = top_c + shift[0] * row + shift[1] * col - (matrix - 1) / 2 * px * (row + col)
        stacks.append((geometry.affine_from_headers(first, (*row, *col), (px, px), -n * spacing), (k, matrix, matrix)))
        block_levels.append(None)
    return Acquisition(sid, SeriesKind.AXIAL_T2, "T2", stacks, thickness, block_levels)
