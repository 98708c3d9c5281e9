"""Patient-space geometry of DICOM image stacks: pure numpy, no I/O (SimpleITK images are only duck-typed).

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

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

log = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------------------------------------------
# plausibility of header geometry: refused at ingestion, so that a decimal slip or a NaN never reaches
# resampling or the model (where it fails as "cannot convert float NaN to integer" or allocates without bound)

#: Pixel spacing a clinical MR image can have: a 0.05 mm pixel would be a microscope, a 20 mm pixel a
#: localiser at best. Outside this range the tag is a slip (75.8 for 0.758) or damage, not an image.
SPACING_RANGE_MM: tuple[float, float] = (0.05, 20.0)
#: ImageOrientationPatient holds two unit vectors at right angles; DS strings keep ~6 digits, so real
#: headers are off by 1e-6..1e-4. Beyond 1e-2 (about 0.6°) the cosines are not an orientation.
IOP_TOLERANCE = 1e-2
#: Any |coordinate| beyond 1e5 mm (100 m) in ImagePositionPatient is damage, and would overflow later sums.
POSITION_LIMIT_MM = 1e5


def _fmt(values: ArrayLike) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in np.asarray(values, dtype=float).reshape(-1)) + "]"


def spacing_problem(spacing_mm: ArrayLike) -> str | None:
    """Why a PixelSpacing (or any voxel size) is not plausible, or None when it is."""
    sp = np.asarray(spacing_mm, dtype=float).reshape(-1)
    if not np.all(np.isfinite(sp)):
        return f"{_fmt(sp)}: not finite"
    lo, hi = SPACING_RANGE_MM
    if np.any(sp < lo) or np.any(sp > hi):
        return f"{_fmt(sp)}: outside the plausible {lo:g}–{hi:g} mm"
    return None


def iop_problem(iop: ArrayLike) -> str | None:
    """Why six direction cosines are not an orientation (unit, orthogonal, finite), or None when they are."""
    v = np.asarray(iop, dtype=float).reshape(-1)
    if v.size != 6:
        return f"{_fmt(v)}: {v.size} values, 6 expected"
    if not np.all(np.isfinite(v)):
        return f"{_fmt(v)}: not finite"
    row, col = v[:3], v[3:]
    for name, vec in (("row", row), ("column", col)):
        if abs(np.linalg.norm(vec) - 1.0) > IOP_TOLERANCE:
            return f"{_fmt(v)}: {name} cosine has length {np.linalg.norm(vec):.4g}, not 1"
    if abs(float(np.dot(row, col))) > IOP_TOLERANCE:
        return f"{_fmt(v)}: row and column cosines not orthogonal (dot {float(np.dot(row, col)):.4g})"
    return None


def position_problem(ipp: ArrayLike) -> str | None:
    """Why an ImagePositionPatient is not a position (not finite, absurdly far), or None."""
    p = np.asarray(ipp, dtype=float).reshape(-1)
    if p.size != 3:
        return f"{_fmt(p)}: {p.size} values, 3 expected"
    if not np.all(np.isfinite(p)):
        return f"{_fmt(p)}: not finite"
    if np.any(np.abs(p) > POSITION_LIMIT_MM):
        return f"{_fmt(p)}: beyond ±{POSITION_LIMIT_MM:g} mm"
    return None


def resampled_shape(
    shape: Sequence[int], spacing_mm: Sequence[float], target_spacing_mm: Sequence[float]
) -> tuple[int, ...]:
    """The array shape after resampling ``shape`` (voxel size ``spacing_mm``) to ``target_spacing_mm``, axis by
    axis in the same order; axes beyond ``target_spacing_mm``'s length are left as they are (nnU-Net's 2d
    configurations resample only in-plane: pass the trailing axes' spacings)."""
    shape = [int(s) for s in shape]
    spacing = [float(s) for s in spacing_mm]
    target = [float(t) for t in target_spacing_mm]
    if len(target) > len(shape):
        raise ValueError(f"target spacing {target} has more axes than shape {shape}")
    offset = len(shape) - len(target)
    out = list(shape)
    for a, t in enumerate(target):
        s = spacing[offset + a]
        if not (np.isfinite(s) and np.isfinite(t) and s > 0 and t > 0):
            raise ValueError(f"spacing {spacing} → {target}: not finite and positive")
        out[offset + a] = max(1, int(round(shape[offset + a] * s / t)))
    return tuple(out)


def check_resample_budget(
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    target_spacing_mm: Sequence[float],
    max_voxels: int,
    what: str = "stack",
) -> tuple[int, ...]:
    """Refuse, before anything is allocated, a resampling whose result would exceed ``max_voxels`` voxels.

    Why: a decimal slip in PixelSpacing (75.8 mm for 0.758) makes an upsampling to a model's 0.5 mm spacing
    ask for terabytes, which hangs a machine rather than failing. Returns the resampled shape when it fits.
    """
    new = resampled_shape(shape, spacing_mm, target_spacing_mm)
    n = int(np.prod([float(v) for v in new]))
    if n > max_voxels:
        raise ValueError(
            f"{what}: resampling {tuple(int(s) for s in shape)} at {_fmt(spacing_mm)} mm to {_fmt(target_spacing_mm)} "
            "mm "
            f"would make {tuple(new)} = {n:.3g} voxels, over the budget of {max_voxels:.3g} "
            f"(check the spacing tags; raise SPINESEG_MAX_RESAMPLED_VOXELS if the study is really that large)"
        )
    return new


# ---------------------------------------------------------------------------------------------------------
# SimpleITK images ↔ affines (the only copy)


def sitk_geometry_from_affine(
    affine: np.ndarray, *, shear_tol_deg: float = 0.05, unshear: bool = True
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, direction) for SimpleITK from a voxel ``(i, j, k)`` → LPS mm affine.

    Spacing is the length of each affine column (column, row, slice spacing), origin the translation, and
    direction the columns normalised, row-major as SimpleITK wants it. NIfTI cannot hold a sheared grid
    (gantry tilt): when the slice step leaves the slice normal by more than ``shear_tol_deg`` the slice axis is
    replaced by the normal, with spacing = the step's component along it, and a warning says so.
    ``unshear=False`` keeps the slice axis as it is (a direction matrix SimpleITK holds but NIfTI may not);
    the label volumes and synthetic masks have always been written that way.
    """
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4×4, got shape {a.shape}")
    cols = a[:3, :3].copy()
    spacing = np.linalg.norm(cols, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"affine has a zero-length axis: column norms {spacing.tolist()}")
    unit = cols / spacing
    normal = np.cross(unit[:, 0], unit[:, 1])
    normal /= np.linalg.norm(normal)
    cos = float(np.clip(abs(np.dot(unit[:, 2], normal)), -1.0, 1.0))
    shear = float(np.degrees(np.arccos(cos)))
    if unshear and shear > shear_tol_deg:
        sign = 1.0 if np.dot(unit[:, 2], normal) >= 0 else -1.0
        log.warning("sheared stack (slice axis %.2f° off the normal, e.g. gantry tilt): writing it unsheared", shear)
        spacing[2] = spacing[2] * cos
        unit[:, 2] = sign * normal
    return (
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in a[:3, 3]),
        tuple(float(v) for v in unit.flatten()),
    )


def affine_from_sitk(image: Any) -> FloatArray:
    """The voxel ``(i, j, k)`` → LPS mm affine of a 3-D SimpleITK image (ITK's physical space is LPS).

    Duck-typed (``GetSpacing``, ``GetDirection``, ``GetOrigin``) so this module needs no SimpleITK import.
    """
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3-D image, got {image.GetDimension()}-D")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=float)
    affine[:3, 3] = image.GetOrigin()
    return affine


def set_sitk_geometry(image: Any, affine: ArrayLike, *, unshear: bool = True) -> Any:
    """Write a voxel → LPS mm affine into a SimpleITK image (spacing, origin, direction); returns the image.

    The one place an affine goes into an image: converters, label volumes and synthetic masks all call it.
    """
    spacing, origin, direction = sitk_geometry_from_affine(np.asarray(affine, dtype=float), unshear=unshear)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image
