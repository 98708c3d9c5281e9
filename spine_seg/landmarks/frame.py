"""The spine's own frame in patient space: unit vectors, the axis fitted through centroids, each disc's
plane and normal, and whether a point lies inside the imaged volume.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


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
        if w[0] <= 1e-9 * w[2]:  # all in one slice (a 2-D image): the disc's flat direction lies in that plane
            w, v = w[1:], v[:, 1:]
        if w[0] < 0.5 * w[1]:
            n = v[:, 0]
            return (n if np.dot(n, fallback) >= 0 else -n), True
    return fallback, False


def _voxel_half_extent(affine: np.ndarray, direction: np.ndarray) -> float:
    """Half the extent of one voxel along a direction: what the outermost voxel centres leave out."""
    return 0.5 * float(np.sum(np.abs(direction @ affine[:3, :3])))


def _unit_columns(affine: np.ndarray) -> np.ndarray:
    """Rows: LPS x, y, z; columns: the unit direction of array axes i, j, k."""
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return cols
