"""mm-normalised 2.5D crops around a world point, and the per-study crop table with its on-disk cache.

A crop is ``n_slices`` neighbouring slices of one stack (the channels), each resampled on a square grid of
``size_px`` pixels that spans ``fov_mm`` millimetres around the point, in the stack's own row/column
directions. Because the grid is defined in mm, a 45 mm crop shows 45 mm of anatomy whatever the pixel
spacing, so one model serves 0.5 mm and 0.9 mm series alike. Right-sided crops of lateral conditions are
mirrored to look like left ones (one model for both sides); the crop records it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from spine_seg.core.constants import (
    GROUP_OF_CONDITION,
    SIDE_OF_CONDITION,
    normalize_condition,
    normalize_level,
)
from spine_seg.core.errors import UsageError
from spine_seg.dicom import Series, Stack, Study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropSpec:
    """What a crop is: field of view (mm), output size (px), slices, and the step between them (slices)."""

    fov_mm: float = 45.0
    size_px: int = 96
    n_slices: int = 3
    slice_step: int = 1

    def __post_init__(self) -> None:
        if self.fov_mm <= 0 or self.size_px < 8 or self.n_slices < 1 or self.slice_step < 1:
            raise UsageError(f"invalid crop spec {self}: fov_mm > 0, size_px >= 8, n_slices >= 1, slice_step >= 1")

    @property
    def key(self) -> str:
        return f"fov{self.fov_mm:g}_px{self.size_px}_n{self.n_slices}_s{self.slice_step}"


#: Default crop per condition group: the canal and the recesses want more context than a foramen.
DEFAULT_SPECS: dict[str, CropSpec] = {
    "spinal": CropSpec(fov_mm=48.0, size_px=96, n_slices=3),
    "foraminal": CropSpec(fov_mm=40.0, size_px=96, n_slices=3),
    "subarticular": CropSpec(fov_mm=48.0, size_px=96, n_slices=3),
}


@dataclass(frozen=True)
class Crop:
    """A crop and where it came from: enough to draw it on the image or to debug a grade."""

    pixels: np.ndarray  # float32 [n_slices, size, size], normalised to ~[0, 1]
    series_id: str
    stack_index: int
    k_centre: int
    instance_number: int
    xy_px: tuple[float, float]
    distance_mm: float
    flipped: bool


def normalise(volume: np.ndarray) -> np.ndarray:
    """Percentile scaling to [0, 1] (1st–99.5th): removes vendor scale and bias without learning it."""
    lo, hi = np.percentile(volume, [1.0, 99.5])
    return np.clip((volume - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def crop_stack(volume: np.ndarray, stack: Stack, xyz_lps_mm: np.ndarray, spec: CropSpec, flip: bool = False) -> Crop:
    """Cut a crop from ``volume`` (the stack's pixels, [k, j, i]) centred on a world point."""
    hit = stack.locate(np.asarray(xyz_lps_mm, dtype=float))
    col_sp, row_sp, _ = stack.spacing_mm
    offsets_mm = (np.arange(spec.size_px) - (spec.size_px - 1) / 2) * (spec.fov_mm / spec.size_px)
    jj, ii = np.meshgrid(hit.y_px + offsets_mm / row_sp, hit.x_px + offsets_mm / col_sp, indexing="ij")
    half = (spec.n_slices - 1) // 2
    ks = np.clip(hit.k + spec.slice_step * (np.arange(spec.n_slices) - half), 0, stack.n_slices - 1)
    out = np.empty((spec.n_slices, spec.size_px, spec.size_px), dtype=np.float32)
    for c, k in enumerate(ks):
        out[c] = ndimage.map_coordinates(volume[k], [jj, ii], order=1, mode="constant", cval=0.0)
    if flip:
        out = out[:, :, ::-1].copy()
    return Crop(
        out, stack.series_id, stack.index, hit.k, hit.instance_number, (hit.x_px, hit.y_px), hit.distance_mm, flip
    )


def crop_series(
    series: Series, xyz_lps_mm: np.ndarray, spec: CropSpec, flip: bool = False, cache: dict | None = None
) -> Crop:
    """Crop from the stack of ``series`` nearest the point; ``cache`` holds loaded, normalised stacks."""
    hit = series.locate(np.asarray(xyz_lps_mm, dtype=float))
    stack = series.stacks[hit.stack_index]
    key = (series.series_id, stack.index)
    if cache is None:
        cache = {}
    if key not in cache:
        cache[key] = normalise(stack.load())
    return crop_stack(cache[key], stack, xyz_lps_mm, spec, flip)


# ---------------------------------------------------------------------------------------------------------
# crops for training: one per labelled keypoint


@dataclass(frozen=True)
class CropRecord:
    study_id: str
    condition: str
    level: str
    series_id: str
    instance_number: int
    x_px: float
    y_px: float
    flipped: bool
    distance_mm: float


def read_keypoints(path: str | Path) -> pd.DataFrame:
    """The competition's keypoint CSV in either spelling, normalised to snake case."""
    path = Path(path)
    df = pd.read_csv(path, dtype={"study_id": str, "series_id": str})
    missing = {"study_id", "series_id", "instance_number", "condition", "level", "x", "y"} - set(df.columns)
    if missing:
        raise UsageError(f"{path}: keypoint CSV lacks columns {sorted(missing)}")
    df["condition"] = df.condition.map(normalize_condition)
    df["level"] = df.level.map(normalize_level)
    return df


def keypoint_crops(
    study: Study, keypoints: pd.DataFrame, specs: Mapping[str, CropSpec] = DEFAULT_SPECS
) -> tuple[dict[tuple[str, str], Crop], list[str]]:
    """Crops of one study at its labelled keypoints: {(condition, level): Crop}, plus warnings.

    Each keypoint is taken to patient space from its own image, then cropped from its own series (the
    series the annotators used), so training crops and inference crops go through the same geometry.
    """
    out: dict[tuple[str, str], Crop] = {}
    warnings: list[str] = []
    cache: dict = {}
    rows = keypoints[keypoints.study_id == study.study_id]
    for r in rows.itertuples(index=False):
        try:
            series = study.get_series(r.series_id)
            xyz = series.pixel_to_world(int(r.instance_number), float(r.x), float(r.y))
        except KeyError as exc:
            warnings.append(f"{r.condition} {r.level}: {exc.args[0]}")
            continue
        spec = specs[GROUP_OF_CONDITION[r.condition]]
        out[(r.condition, r.level)] = crop_series(
            series, xyz, spec, flip=SIDE_OF_CONDITION[r.condition] == "right", cache=cache
        )
    return out, warnings


# ---------------------------------------------------------------------------------------------------------
# on-disk cache: one compact .npz per study plus a manifest; reused while its inputs are unchanged


def _fingerprint(study: Study, keypoints: pd.DataFrame, specs: Mapping[str, CropSpec]) -> str:
    h = hashlib.sha256()
    for series in study.series:
        for stack in series.stacks:
            for s in stack.slices:
                st = os.stat(s.path)
                h.update(f"{s.path}|{st.st_size}|{st.st_mtime_ns}".encode())
    rows = keypoints[keypoints.study_id == study.study_id].sort_values(["condition", "level"])
    h.update(rows.to_csv(index=False).encode())
    h.update(json.dumps({k: asdict(v) for k, v in sorted(specs.items())}).encode())
    return h.hexdigest()[:20]


class _Manifest(Mapping):
    """Read-only view of the per-study manifests ``root/<study>.json`` (fingerprint, records, warnings)."""

    def __init__(self, root: Path):
        self.root = root

    def __getitem__(self, study_id: str) -> dict:
        path = self.root / f"{study_id}.json"
        if not path.exists():
            raise KeyError(study_id)
        return json.loads(path.read_text())

    def __iter__(self):
        return (p.stem for p in sorted(self.root.glob("*.json")))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))


class CropCache:
    """``root/<study>.npz`` (float16 crops) beside ``root/<study>.json`` (fingerprint, records, warnings).

    One small manifest per study, written atomically after its crops: a study's cost does not grow with
    the cohort, a kill loses at most the study in progress, and parallel workers never share a file.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = _Manifest(self.root)

    def get(
        self, study: Study, keypoints: pd.DataFrame, specs: Mapping[str, CropSpec] = DEFAULT_SPECS
    ) -> dict[tuple[str, str], np.ndarray]:
        """The study's crops as float32 arrays, from the cache when its fingerprint matches."""
        fp = _fingerprint(study, keypoints, specs)
        path = self.root / f"{study.study_id}.npz"
        entry = self.manifest.get(study.study_id)
        if entry and entry["fingerprint"] == fp and path.exists():
            with np.load(path) as z:
                return {tuple(k.split("|")): z[k].astype(np.float32) for k in z.files}  # type: ignore[misc]
        crops, warnings = keypoint_crops(study, keypoints, specs)
        arrays = {f"{c}|{lv}": crop.pixels.astype(np.float16) for (c, lv), crop in crops.items()}
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        tmp.replace(path)
        doc = {
            "fingerprint": fp,
            "records": [
                asdict(
                    CropRecord(
                        study.study_id,
                        c,
                        lv,
                        cr.series_id,
                        cr.instance_number,
                        cr.xy_px[0],
                        cr.xy_px[1],
                        cr.flipped,
                        round(cr.distance_mm, 3),
                    )
                )
                for (c, lv), cr in crops.items()
            ],
            "warnings": warnings,
        }
        tmp_json = self.root / f"{study.study_id}.json.tmp"
        tmp_json.write_text(json.dumps(doc, indent=1, sort_keys=True))
        tmp_json.replace(self.root / f"{study.study_id}.json")
        return {k: v.pixels for k, v in crops.items()}


__all__ = [
    "DEFAULT_SPECS",
    "Crop",
    "CropCache",
    "CropRecord",
    "CropSpec",
    "crop_series",
    "crop_stack",
    "keypoint_crops",
    "normalise",
    "read_keypoints",
]
