"""Typed, immutable model of an MRI study: Study → Series → Stack → SliceInfo.

Headers are read once by :mod:`spine_seg.dicom.scan`; pixels are read only when a caller asks
(:meth:`Stack.load`), so scanning a folder of hundreds of studies stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from spine_seg.core import geometry
from spine_seg.core.constants import SeriesKind
from spine_seg.core.errors import NotFoundError, UsageError, UserError


class DicomError(UserError):
    """Base class of ingestion errors; the message always names the file or folder at fault."""


class NoImageSeriesError(DicomError):
    """A folder holds no series that spineseg can use."""


class PixelDataError(DicomError):
    """Pixel data of a file could not be decoded."""


class AmbiguousInstanceError(UsageError, KeyError):
    """An InstanceNumber that several slices of a series share, so it names no one image.

    Picking one of them would put a pixel in patient space without a word about the other; the message names
    the series, the instance number and every file with its stack and slice. A :class:`UsageError` (the
    number given cannot be used) and a ``KeyError`` too, like :class:`NotFoundError`: callers that skip a
    keypoint whose instance cannot be resolved (crop tables, the nnU-Net keypoint converter) skip this one
    with its message instead of failing the study.
    """

    def __str__(self) -> str:  # KeyError quotes its message; a user reads it as a sentence
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SliceInfo:
    """Header facts of one image file: everything geometry needs, nothing pixel-sized."""

    path: Path
    instance_number: int
    ipp: tuple[float, float, float]
    iop: tuple[float, float, float, float, float, float]
    pixel_spacing_mm: tuple[float, float]  # DICOM order: (row spacing, column spacing)
    rows: int
    columns: int
    slice_thickness_mm: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    photometric: str = "MONOCHROME2"
    transfer_syntax: str = ""

    @property
    def position_mm(self) -> float:
        """Position along the slice normal: the sort key of a stack."""
        return geometry.position_along_normal(self.ipp, self.iop)

    def pixel_to_world(self, x_px: float, y_px: float) -> np.ndarray:
        return geometry.pixel_to_world(self.ipp, self.iop, self.pixel_spacing_mm, (x_px, y_px))

    def world_to_pixel(self, xyz_lps_mm: np.ndarray) -> tuple[float, float, float]:
        return geometry.world_to_pixel(self.ipp, self.iop, self.pixel_spacing_mm, xyz_lps_mm)

    def load(self) -> np.ndarray:
        """Pixels of this slice as float32 [row, column], rescaled to stored units."""
        from spine_seg.dicom.pixels import load_slice

        return load_slice(self)


@dataclass(frozen=True)
class SliceHit:
    """Where a world point falls in a stack: nearest slice, in-plane pixel and distance to the plane."""

    series_id: str
    stack_index: int
    k: int
    instance_number: int
    x_px: float
    y_px: float
    distance_mm: float
    inside_fov: bool

    def to_dict(self) -> dict:
        return {
            "series_id": self.series_id,
            "stack": self.stack_index,
            "instance_number": self.instance_number,
            "x": round(self.x_px, 2),
            "y": round(self.y_px, 2),
            "distance_mm": round(self.distance_mm, 3),
            "inside_fov": self.inside_fov,
        }


@dataclass(frozen=True)
class Stack:
    """Slices of one series sharing orientation, pixel spacing and matrix, sorted along the normal.

    A series splits into several stacks when its geometry changes (the competition's axial series are
    often one oblique block per disc) or where the slice spacing jumps.
    """

    study_id: str
    series_id: str
    index: int
    slices: tuple[SliceInfo, ...]

    def __post_init__(self) -> None:
        if not self.slices:
            raise UsageError(f"series {self.series_id}: a stack needs at least one slice")

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def iop(self) -> tuple[float, ...]:
        return self.slices[0].iop

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (k, j, i) = (slices, rows, columns)."""
        return (self.n_slices, self.slices[0].rows, self.slices[0].columns)

    @property
    def normal(self) -> np.ndarray:
        return geometry.slice_normal(self.iop)

    @property
    def orientation(self) -> str:
        return geometry.orientation_label(self.iop)

    @property
    def slice_spacing_mm(self) -> float:
        """Median centre-to-centre distance between slices (the thickness for a single slice)."""
        if self.n_slices == 1:
            return float(self.slices[0].slice_thickness_mm or 1.0)
        pos = np.array([s.position_mm for s in self.slices])
        return float(np.median(np.diff(pos)))

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size in ijk order: (column spacing, row spacing, slice spacing)."""
        row_sp, col_sp = self.slices[0].pixel_spacing_mm
        return (col_sp, row_sp, self.slice_spacing_mm)

    @cached_property
    def affine(self) -> np.ndarray:
        """Voxel (i, j, k) → LPS mm; see :mod:`spine_seg.core.geometry` for the convention."""
        first = self.slices[0]
        if self.n_slices > 1:
            step = (np.asarray(self.slices[-1].ipp) - np.asarray(first.ipp)) / (self.n_slices - 1)
        else:
            step = self.slice_spacing_mm
        return geometry.affine_from_headers(first.ipp, first.iop, first.pixel_spacing_mm, step)

    @property
    def instance_numbers(self) -> tuple[int, ...]:
        return tuple(s.instance_number for s in self.slices)

    def slice_of_instance(self, instance_number: int) -> int | None:
        for k, s in enumerate(self.slices):
            if s.instance_number == instance_number:
                return k
        return None

    def load(self) -> np.ndarray:
        """The stack's pixels as float32 ``[k, j, i]``; read from disk on every call, never cached."""
        from spine_seg.dicom.pixels import load_stack

        return load_stack(self)

    def locate(self, xyz_lps_mm: np.ndarray) -> SliceHit:
        """Nearest slice to a world point, measured from each slice's own plane (robust to uneven gaps)."""
        best: SliceHit | None = None
        for k, s in enumerate(self.slices):
            x, y, d = s.world_to_pixel(xyz_lps_mm)
            if best is None or abs(d) < abs(best.distance_mm):
                inside = -0.5 <= x <= s.columns - 0.5 and -0.5 <= y <= s.rows - 0.5
                best = SliceHit(self.series_id, self.index, k, s.instance_number, x, y, d, inside)
        assert best is not None
        return best

    def summary(self) -> dict:
        first = self.slices[0]
        return {
            "index": self.index,
            "n_slices": self.n_slices,
            "orientation": self.orientation,
            "obliquity_deg": round(geometry.obliquity_deg(self.iop), 2),
            "axis_codes": geometry.axis_codes(self.iop),
            "image_orientation_patient": [round(v, 5) for v in self.iop],
            "matrix": [first.rows, first.columns],
            "spacing_mm": [round(v, 4) for v in self.spacing_mm],
            "pixel_spacing_mm": [round(v, 4) for v in first.pixel_spacing_mm],
            "slice_thickness_mm": first.slice_thickness_mm,
            "instance_numbers": [self.slices[0].instance_number, self.slices[-1].instance_number],
        }


@dataclass(frozen=True)
class Series:
    """One acquisition: its kind (with the evidence for it) and its stacks."""

    study_id: str
    series_id: str
    kind: SeriesKind
    kind_evidence: tuple[str, ...]
    stacks: tuple[Stack, ...]
    description: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def n_slices(self) -> int:
        return sum(st.n_slices for st in self.stacks)

    def find_instance(self, instance_number: int) -> tuple[Stack, int]:
        """The stack and slice index of the one image with this InstanceNumber.

        Raises :class:`NotFoundError` when no slice has it and :class:`AmbiguousInstanceError` when several
        do (a series re-numbered per stack, or a damaged header): which of them was meant cannot be known.
        """
        found = [(st, k) for st in self.stacks for k, s in enumerate(st.slices) if s.instance_number == instance_number]
        if len(found) == 1:
            return found[0]
        if found:
            where = ", ".join(
                f"{st.slices[k].path} (stack {st.index}, slice {k + 1} of {st.n_slices})" for st, k in found
            )
            raise AmbiguousInstanceError(
                f"series {self.series_id}: instance {instance_number} is shared by {len(found)} slices, {where}; "
                "an instance number must name one image"
            )
        valid = sorted(i for st in self.stacks for i in st.instance_numbers)
        raise NotFoundError(
            f"series {self.series_id} has no instance {instance_number}; valid: {valid[0]}..{valid[-1]} ({len(valid)} "
            "instances)"
        )

    def pixel_to_world(self, instance_number: int, x_px: float, y_px: float) -> np.ndarray:
        """A labelled pixel (instance_number, x, y), as the competition's keypoints give it, → LPS mm."""
        stack, k = self.find_instance(instance_number)
        return stack.slices[k].pixel_to_world(x_px, y_px)

    def locate(self, xyz_lps_mm: np.ndarray) -> SliceHit:
        """Nearest slice over all stacks, preferring slices whose field of view holds the point."""
        hits = [st.locate(xyz_lps_mm) for st in self.stacks]
        return min(hits, key=lambda h: (not h.inside_fov, abs(h.distance_mm)))

    def summary(self) -> dict:
        return {
            "series_id": self.series_id,
            "kind": self.kind.value,
            "kind_evidence": list(self.kind_evidence),
            "description": self.description,
            "n_slices": self.n_slices,
            "stacks": [st.summary() for st in self.stacks],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class Study:
    study_id: str
    root: Path
    series: tuple[Series, ...]
    warnings: tuple[str, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()

    def get_series(self, series_id: str) -> Series:
        for s in self.series:
            if s.series_id == str(series_id):
                return s
        raise NotFoundError(
            f"study {self.study_id} has no series {series_id!r}; valid: {[s.series_id for s in self.series]}"
        )

    def series_of_kind(self, kind: SeriesKind) -> list[Series]:
        return [s for s in self.series if s.kind is kind]

    def segmentation_stack(self) -> tuple[Series | None, Stack | None]:
        """The Sagittal T2/STIR stack to segment: the series with most slices, its largest stack.

        The one rule for "which Sagittal T2 stack": prediction segments it, the report draws it.
        """
        return self.largest_stack(SeriesKind.SAGITTAL_T2)

    def largest_stack(self, kind: SeriesKind) -> tuple[Series | None, Stack | None]:
        """The series of ``kind`` with most slices and its largest stack (ties: lowest series id, first stack)."""
        series = [s for s in self.series_of_kind(kind) if s.stacks]
        if not series:
            return None, None
        s = max(series, key=lambda x: (x.n_slices, x.series_id))
        return s, max(s.stacks, key=lambda st: (st.n_slices, -st.index))

    def summary(self) -> dict:
        return {
            "study_id": self.study_id,
            "root": str(self.root),
            "series": [s.summary() for s in self.series],
            "warnings": list(self.warnings),
            "skipped": [{"path": str(f.path), "reason": f.reason} for f in self.skipped],
        }
