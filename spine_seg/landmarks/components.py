"""Label volume → connected components in patient space: reading a label image, grouping voxels, dropping
specks, merging fragments, and the typical spacing between neighbours along the spine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from spine_seg.core.geometry import affine_from_sitk
from spine_seg.core.labels import (
    SEG_LABELS,
    seg_labels_from_spider,
)
from spine_seg.landmarks.types import MIN_COMPONENT_FRACTION, MIN_COMPONENT_MM3, PRIOR_DISC_SPACING_MM


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


#: 26-connectivity: voxels touching by a corner belong together (thick slices make thin bridges).
_FULL_3D = np.ones((3, 3, 3), dtype=bool)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label`` of a 3-D mask with 26-connectivity, scanning only the mask's bounding box.

    The same labels, numbered the same way, as labelling the whole volume: a spine fills a small part of a
    381 mm field of view, and labelling the empty rest was half the landmark time of a large volume."""
    mask = np.asarray(mask, dtype=bool)
    cc = np.zeros(mask.shape, dtype=np.int32)
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hit):
            return cc, 0
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    inner, n = ndimage.label(mask[tuple(box)], structure=_FULL_3D)
    cc[tuple(box)] = inner
    return cc, int(n)


def _components(labels: np.ndarray, values: tuple[int, ...], affine: np.ndarray, lateral_axis: int) -> list[_Component]:
    mask = np.isin(labels, values)
    cc, _ = label_components(mask)
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
            f"dropped {len(dropped)} small {what} component(s) "
            f"({', '.join(f'{c.n * voxel_mm3:.0f}' for c in dropped[:6])} mm³;"
            f" limit {limit * voxel_mm3:.0f} mm³) as spurious or cut by the field of view"
        )
    return kept


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


def _steps_along(
    centroids: list[np.ndarray], between: Callable[[int], str], what_missing: str, warnings: list[str]
) -> tuple[float, list[int]]:
    """(typical spacing, each structure's position in whole steps from the first), centroids in spine order.

    A distance of about two steps means a structure in between was not segmented; the count must skip it, or
    every name below would slip by one. ``between(i)`` names the pair around gap ``i`` for the warning.
    """
    dist = [float(np.linalg.norm(a - b)) for a, b in zip(centroids, centroids[1:], strict=False)]
    spacing = _typical_spacing(dist)
    positions = [0]
    for i, d in enumerate(dist):
        step = max(1, int(round(d / spacing)))
        if step > 1:
            warnings.append(
                f"gap of {d:.0f} mm between {between(i)} (typical {spacing:.0f} mm): {step - 1} {what_missing} "
                "missing in between"
            )
        positions.append(positions[-1] + step)
    return spacing, positions
