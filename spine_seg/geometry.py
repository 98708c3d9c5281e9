"""Patient-space geometry of DICOM image stacks: pure numpy, no I/O.

Convention (used everywhere in spineseg):

* World space is DICOM patient space, **LPS** (x to the patient's Left, y Posterior, z Superior), in mm.
* Voxel index ``ijk`` = (column, row, slice): ``i`` runs along a row (DICOM's x pixel coordinate, the
  competition's ``x``), ``j`` down the columns (pixel ``y``), ``k`` through the stack's slices, which are
  sorted by their position along the slice normal ``row_cosine × column_cosine``.
* Pixel centres sit on integer indices: ImagePositionPatient is the centre of voxel (0, 0, k).
* Arrays are stored ``volume[k, j, i]`` (slice, row, column), the order SimpleITK and nnU-Net use.
* The affine is a 4×4 ``A`` with ``xyz_lps_mm = A @ [i, j, k, 1]``. Its columns are
  ``row_cosine * column_spacing``, ``column_cosine * row_spacing`` and the slice step vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def slice_normal(iop: ArrayLike) -> FloatArray:
    """Unit normal ``row × column`` of an ImageOrientationPatient (6 direction cosines)."""
    iop = np.asarray(iop, dtype=float).reshape(6)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError(f"degenerate ImageOrientationPatient {iop.tolist()}: row and column cosines are parallel")
    return n / norm


def position_along_normal(ipp: ArrayLike, iop: ArrayLike) -> float:
    """Signed distance (mm) of a slice's ImagePositionPatient along its normal; the sort key of a stack."""
    return float(np.dot(np.asarray(ipp, dtype=float), slice_normal(iop)))


def affine_from_headers(
    ipp_first: ArrayLike,
    iop: ArrayLike,
    pixel_spacing_mm: Sequence[float],
    slice_step: ArrayLike | float,
) -> FloatArray:
    """Voxel (i, j, k) → LPS mm affine of a stack.

    ``pixel_spacing_mm`` is DICOM's PixelSpacing: (row spacing, column spacing), i.e. the distance between
    rows first. ``slice_step`` is either the vector from the first slice's position to the second's (exact
    for oblique or sheared stacks) or a scalar spacing along the normal (single-slice stacks).
    """
    iop = np.asarray(iop, dtype=float).reshape(6)
    row_cos, col_cos = iop[:3], iop[3:]
    row_spacing, col_spacing = (float(v) for v in pixel_spacing_mm)
    step = np.asarray(slice_step, dtype=float)
    if step.ndim == 0:
        step = slice_normal(iop) * float(step)
    affine = np.eye(4)
    affine[:3, 0] = row_cos * col_spacing
    affine[:3, 1] = col_cos * row_spacing
    affine[:3, 2] = step.reshape(3)
    affine[:3, 3] = np.asarray(ipp_first, dtype=float).reshape(3)
    return affine


def voxel_to_world(affine: ArrayLike, ijk: ArrayLike) -> FloatArray:
    """Voxel indices (..., 3) → LPS mm (..., 3)."""
    affine = np.asarray(affine, dtype=float)
    ijk = np.asarray(ijk, dtype=float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: ArrayLike, xyz_lps_mm: ArrayLike) -> FloatArray:
    """LPS mm (..., 3) → continuous voxel indices (..., 3); round them yourself where you need a voxel."""
    affine = np.asarray(affine, dtype=float)
    xyz = np.asarray(xyz_lps_mm, dtype=float)
    return (xyz - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T


def pixel_to_world(ipp: ArrayLike, iop: ArrayLike, pixel_spacing_mm: Sequence[float], xy_px: ArrayLike) -> FloatArray:
    """A pixel (x = column, y = row) of one slice → LPS mm, from that slice's own headers."""
    iop = np.asarray(iop, dtype=float).reshape(6)
    x, y = (float(v) for v in np.asarray(xy_px, dtype=float).reshape(2))
    row_spacing, col_spacing = (float(v) for v in pixel_spacing_mm)
    return np.asarray(ipp, dtype=float).reshape(3) + x * col_spacing * iop[:3] + y * row_spacing * iop[3:]


def world_to_pixel(
    ipp: ArrayLike, iop: ArrayLike, pixel_spacing_mm: Sequence[float], xyz_lps_mm: ArrayLike
) -> tuple[float, float, float]:
    """Project an LPS point onto one slice: (x_px, y_px, signed distance from the slice plane in mm)."""
    iop = np.asarray(iop, dtype=float).reshape(6)
    d = np.asarray(xyz_lps_mm, dtype=float).reshape(3) - np.asarray(ipp, dtype=float).reshape(3)
    row_spacing, col_spacing = (float(v) for v in pixel_spacing_mm)
    return (
        float(np.dot(d, iop[:3]) / col_spacing),
        float(np.dot(d, iop[3:]) / row_spacing),
        float(np.dot(d, slice_normal(iop))),
    )


def orientation_label(iop: ArrayLike) -> str:
    """``sagittal``, ``coronal`` or ``axial``: the LPS axis the slice normal is closest to."""
    n = np.abs(slice_normal(iop))
    return ("sagittal", "coronal", "axial")[int(np.argmax(n))]


def obliquity_deg(iop: ArrayLike) -> float:
    """Angle (degrees) between the slice normal and the nearest LPS axis; 0 for a true plane."""
    n = np.abs(slice_normal(iop))
    return float(np.degrees(np.arccos(np.clip(n.max(), -1.0, 1.0))))


def axis_codes(iop: ArrayLike) -> str:
    """Two letters for the directions of increasing column and row, e.g. ``PF``... as radiologists read them.

    Each letter names the patient direction a cosine points to (L/R, P/A, S/I, with H for head = S and
    F for feet = I as in DICOM's PatientOrientation); an oblique cosine gets its dominant axis.
    """
    iop = np.asarray(iop, dtype=float).reshape(6)
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    out = []
    for v in (iop[:3], iop[3:]):
        axis = int(np.argmax(np.abs(v)))
        out.append(letters[axis][0 if v[axis] > 0 else 1])
    return "".join(out)
