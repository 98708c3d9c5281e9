"""Dataset502/504: RSNA 2024 keypoints → landmark masks on the sagittal series they were marked on.

Input is the competition layout::

    train_images/<study>/<series>/<instance>.dcm
    train_series_descriptions.csv      study_id, series_id, series_description
    train_label_coordinates.csv        study_id, series_id, instance_number, condition, level, x, y
                                       (or the corrected train_label_coordinates.fix01b.csv; both spellings of
                                       conditions and levels are read: "Spinal Canal Stenosis"/"L4/L5" and
                                       "spinal_canal_stenosis"/"l4_l5")

Two datasets, because the two tasks live on different series (different contrast and usually a different
grid), so they cannot be two channels of one case:

* ``spinal`` → Dataset502_RSNASpinalKeypoints: every Sagittal T2/STIR stack with spinal-canal points,
  5 labels (one per level);
* ``foraminal`` → Dataset504_RSNAForaminalKeypoints: every Sagittal T1 stack with foraminal points,
  10 labels (level × side, the patient's left and right).

One case per labelled stack: ``<study>_<series>`` (``_s<stack>`` appended when a series has several stacks).
Each keypoint becomes a small ellipsoid: a disc of ``radius_mm`` on the labelled slice, converted to pixels
with the stack's own pixel spacing, and ``slice_extent`` slices either side with the radius shrinking as an
ellipsoid whose half-axis across slices is ``slice_extent + 0.5`` slices (0 = the labelled slice only).
Geometry comes from spineseg's DICOM ingestion (:func:`spine_seg.dicom.scan_folder`, ``Series.find_instance``,
``Stack.load``, ``Stack.affine``). A study or series that fails is skipped with the reason; the rest converts.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spine_seg.core.constants import LEVELS, SIDES, SeriesKind, normalize_condition, normalize_level
from spine_seg.core.errors import UsageError
from spine_seg.dicom import DicomError, read_series_csv, scan_folder

from .common import (
    DEFAULT_FOLDS,
    DEFAULT_SPLIT_SEED,
    ConversionReport,
    compact_image_dtype,
    label_voxel_counts,
    map_cases,
    prepare_dataset_folder,
    sitk_image,
    write_case,
    write_dataset_json,
    write_splits,
)

log = logging.getLogger(__name__)

#: Label maps of the two keypoint datasets, as data. (Candidate to move to spine_seg/labels.py.)
KEYPOINT_LABELS: dict[str, dict[str, int]] = {
    "spinal": {"background": 0, **{f"spinal_{lv}": i + 1 for i, lv in enumerate(LEVELS)}},
    "foraminal": {
        "background": 0,
        **{
            f"{side}_foramen_{lv}": 1 + s * len(LEVELS) + i
            for s, side in enumerate(SIDES)
            for i, lv in enumerate(LEVELS)
        },
    },
}


@dataclass(frozen=True)
class KeypointTask:
    name: str
    series_kind: SeriesKind
    conditions: tuple[str, ...]
    dataset_id: int
    dataset_name: str
    channel: str


TASKS: dict[str, KeypointTask] = {
    "spinal": KeypointTask(
        "spinal", SeriesKind.SAGITTAL_T2, ("spinal_canal_stenosis",), 502, "RSNASpinalKeypoints", "T2"
    ),
    "foraminal": KeypointTask(
        "foraminal",
        SeriesKind.SAGITTAL_T1,
        ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"),
        504,
        "RSNAForaminalKeypoints",
        "T1",
    ),
}
DEFAULT_RADIUS_MM = 4.0
DEFAULT_SLICE_EXTENT = 0
COORDS_CANDIDATES: tuple[str, ...] = ("train_label_coordinates.fix01b.csv", "train_label_coordinates.csv")
SERIES_CSV = "train_series_descriptions.csv"
REFERENCE = "https://www.kaggle.com/competitions/rsna-2024-lumbar-spine-degenerative-classification"
LICENCE = "RSNA 2024 Lumbar Spine competition data terms (non-commercial research use); not an open licence"
CITATION = "RSNA 2024 Lumbar Spine Degenerative Classification, Radiological Society of North America / ASNR (2024)"


def keypoint_label(task: str, condition: str, level: str) -> int:
    """The label value of one keypoint (``condition`` and ``level`` in either spelling)."""
    condition, level = normalize_condition(condition), normalize_level(level)
    if condition not in TASKS[task].conditions:
        raise UsageError(f"condition {condition!r} is not part of the {task!r} task {list(TASKS[task].conditions)}")
    if task == "spinal":
        return KEYPOINT_LABELS[task][f"spinal_{level}"]
    side = condition.split("_", 1)[0]
    return KEYPOINT_LABELS[task][f"{side}_foramen_{level}"]


def find_coords_csv(input_dir: Path) -> Path:
    """The keypoint file in a competition folder: the corrected ``fix01b`` file when present, else Kaggle's."""
    for name in COORDS_CANDIDATES:
        if (input_dir / name).exists():
            return input_dir / name
    raise FileNotFoundError(f"{input_dir}: no keypoint file ({' or '.join(COORDS_CANDIDATES)}); pass coords_csv=")


def read_keypoints(path: str | Path) -> pd.DataFrame:
    """Read a keypoint CSV (both spellings) into normalised columns; a bad row is an error naming the file."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"study_id": str, "series_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UsageError(f"{path}: cannot read keypoint CSV: {exc}") from exc
    need = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UsageError(f"{path}: keypoint CSV lacks columns {missing}; has {list(df.columns)}")
    df = df[need].copy()
    df["study_id"] = df["study_id"].astype(str).str.strip()
    df["series_id"] = df["series_id"].astype(str).str.strip()
    try:
        df["condition"] = [normalize_condition(c) for c in df["condition"]]
        df["level"] = [normalize_level(lv) for lv in df["level"]]
        df["instance_number"] = df["instance_number"].astype(int)
        df["x"] = df["x"].astype(float)
        df["y"] = df["y"].astype(float)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: {exc}") from exc
    return df


def draw_keypoints(
    shape_kji: tuple[int, int, int],
    points: Iterable[tuple[int, float, float, int]],
    spacing_col_row_mm: tuple[float, float],
    radius_mm: float = DEFAULT_RADIUS_MM,
    slice_extent: int = DEFAULT_SLICE_EXTENT,
) -> tuple[np.ndarray, int]:
    """Paint ``(k, x, y, value)`` keypoints into a ``[k, j, i]`` uint8 volume; returns (volume, overlapping voxels).

    Pixel centres sit on integer ``(x, y)``; a voxel is inside when its centre lies within the ellipse of
    radius ``radius_mm`` (scaled by ``sqrt(1 - (dk / (slice_extent + 0.5))²)`` on slice ``k ± dk``). The pixel
    nearest the point is always set, so a blob never vanishes at coarse spacing. Later points overwrite
    earlier ones; the number of voxels claimed twice is returned for the report.
    """
    if radius_mm <= 0:
        raise UsageError(f"radius_mm must be positive, got {radius_mm}")
    if slice_extent < 0:
        raise UsageError(f"slice_extent must be 0 or more, got {slice_extent}")
    nk, nj, ni = shape_kji
    col_sp, row_sp = (float(v) for v in spacing_col_row_mm)
    out = np.zeros(shape_kji, dtype=np.uint8)
    overlap = 0
    half = slice_extent + 0.5
    for k0, x, y, value in points:
        for dk in range(-slice_extent, slice_extent + 1):
            k = int(k0) + dk
            if not 0 <= k < nk:
                continue
            r = radius_mm * math.sqrt(max(0.0, 1.0 - (dk / half) ** 2))
            i0, i1 = max(0, math.floor(x - r / col_sp)), min(ni - 1, math.ceil(x + r / col_sp))
            j0, j1 = max(0, math.floor(y - r / row_sp)), min(nj - 1, math.ceil(y + r / row_sp))
            if i0 > i1 or j0 > j1:
                continue
            jj, ii = np.mgrid[j0 : j1 + 1, i0 : i1 + 1]
            inside = ((ii - x) * col_sp) ** 2 + ((jj - y) * row_sp) ** 2 <= r * r
            ci, cj = int(round(x)), int(round(y))
            if j0 <= cj <= j1 and i0 <= ci <= i1:
                inside[cj - j0, ci - i0] = True
            view = out[k, j0 : j1 + 1, i0 : i1 + 1]
            overlap += int(np.count_nonzero(inside & (view != 0) & (view != value)))
            view[inside] = value
    return out, overlap


@dataclass(frozen=True)
class _Job:
    task: str
    study_id: str
    series_id: str
    folder: Path
    listed_kind: SeriesKind | None
    points: tuple[tuple[int, str, str, float, float], ...]  # instance, condition, level, x, y
    out: Path
    radius_mm: float
    slice_extent: int
    require_complete: bool


def _convert_series(job: _Job) -> list[dict[str, Any]]:
    """One series → one case per stack holding keypoints; failures come back as {"skipped": reason}.

    Long on purpose: one series' keypoints placed and written; the steps share its geometry.
    """
    item = f"{job.study_id}/{job.series_id}"
    task = TASKS[job.task]
    try:
        table = {(job.study_id, job.series_id): job.listed_kind} if job.listed_kind is not None else None
        studies = scan_folder(job.folder, table)
        series = [s for st in studies for s in st.series]
        if len(series) != 1:
            return [{"item": item, "skipped": f"{job.folder} holds {len(series)} series, expected 1"}]
        ser = series[0]
        if ser.kind is not task.series_kind:
            return [
                {
                    "item": item,
                    "skipped": f"series is {ser.kind.value}, the {job.task} task needs {task.series_kind.value}",
                }
            ]
        by_stack: dict[int, list[tuple[int, float, float, int, int, str, str]]] = {}
        dropped = []
        for inst, cond, lv, x, y in job.points:
            try:
                stack, k = ser.find_instance(inst)
            except KeyError as exc:
                dropped.append(f"instance {inst} ({cond} {lv}): {exc.args[0]}")
                continue
            first = stack.slices[k]
            if not (-0.5 <= x <= first.columns - 0.5 and -0.5 <= y <= first.rows - 0.5):
                dropped.append(
                    f"instance {inst} ({cond} {lv}): ({x:.1f}, {y:.1f}) outside the {first.columns}×{first.rows} image"
                )
                continue
            by_stack.setdefault(stack.index, []).append((k, x, y, keypoint_label(job.task, cond, lv), inst, cond, lv))
        if not by_stack:
            return [{"item": item, "skipped": "no usable keypoints: " + "; ".join(dropped)}]
        records = []
        for idx, pts in sorted(by_stack.items()):
            stack = ser.stacks[idx]
            case_id = f"{job.study_id}_{job.series_id}" + (f"_s{idx}" if len(ser.stacks) > 1 else "")
            values = Counter(p[3] for p in pts)
            missing = sorted(set(KEYPOINT_LABELS[job.task].values()) - {0} - set(values))
            if job.require_complete and missing:
                records.append(
                    {"item": f"{item} stack {idx}", "skipped": f"incomplete: labels {missing} have no keypoint"}
                )
                continue
            volume = compact_image_dtype(stack.load())
            label, overlap = draw_keypoints(
                stack.shape, [p[:4] for p in pts], stack.spacing_mm[:2], job.radius_mm, job.slice_extent
            )
            image = sitk_image(volume, stack.affine)
            lab = sitk_image(label, reference=image)
            write_case(job.out, case_id, [image], lab)
            records.append(
                {
                    "case_id": case_id,
                    "study_id": job.study_id,
                    "series_id": job.series_id,
                    "stack": idx,
                    "shape_kji": list(stack.shape),
                    "spacing_mm": [round(v, 4) for v in stack.spacing_mm],
                    "points": [
                        {
                            "instance_number": inst,
                            "condition": cond,
                            "level": lv,
                            "k": k,
                            "x": round(x, 3),
                            "y": round(y, 3),
                            "label": val,
                            "xyz_lps_mm": [round(float(v), 3) for v in stack.slices[k].pixel_to_world(x, y)],
                        }
                        for k, x, y, val, inst, cond, lv in pts
                    ],
                    "duplicate_labels": sorted(v for v, n in values.items() if n > 1),
                    "missing_labels": missing,
                    "dropped_points": dropped,
                    "overlap_voxels": overlap,
                    "label_voxels": {str(k): v for k, v in label_voxel_counts(label).items()},
                }
            )
        return records
    except (DicomError, OSError, ValueError, KeyError, RuntimeError) as exc:
        return [{"item": item, "skipped": f"{type(exc).__name__}: {exc}"}]


def convert_rsna_keypoints(
    input_dir: str | Path,
    raw_root: str | Path,
    dataset_id: int | None = None,
    *,
    task: str = "spinal",
    radius_mm: float = DEFAULT_RADIUS_MM,
    slice_extent: int = DEFAULT_SLICE_EXTENT,
    series_csv: str | Path | None = None,
    coords_csv: str | Path | None = None,
    images_dir: str | Path | None = None,
    study_ids: Iterable[str | int] | None = None,
    require_complete: bool = False,
    dataset_name: str | None = None,
    n_folds: int = DEFAULT_FOLDS,
    split_seed: int = DEFAULT_SPLIT_SEED,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Convert competition keypoints of one ``task`` ("spinal" → 502, "foraminal" → 504) to an nnU-Net dataset.

    ``input_dir`` holds ``train_images/`` (or give ``images_dir``), ``train_series_descriptions.csv``
    (``series_csv``) and the keypoint file (``coords_csv``; default: the corrected ``fix01b`` file if present,
    else ``train_label_coordinates.csv``). ``study_ids`` restricts the conversion; studies listed in the
    keypoint file without a folder are skipped (counted once in the log, listed in the report).
    ``require_complete`` skips stacks missing a label (e.g. a level without a keypoint) instead of leaving
    that landmark as background. Folds are grouped by study. Returns the dataset folder.

    Long on purpose: one linear conversion (read, place, write, split, report) for one dataset.
    """
    if task not in TASKS:
        raise UsageError(f"unknown keypoint task {task!r}; valid: {list(TASKS)}")
    spec = TASKS[task]
    input_dir = Path(input_dir)
    dataset_id = spec.dataset_id if dataset_id is None else int(dataset_id)
    images = Path(images_dir) if images_dir is not None else input_dir / "train_images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: no such folder (expected train_images/<study>/<series>/<instance>.dcm)")
    series_csv = Path(series_csv) if series_csv is not None else input_dir / SERIES_CSV
    coords_csv = Path(coords_csv) if coords_csv is not None else find_coords_csv(input_dir)
    kinds = read_series_csv(series_csv) if series_csv.exists() else {}
    if not series_csv.exists():
        log.warning("%s not found: series kinds are inferred from the DICOM headers", series_csv)
    if radius_mm <= 0 or slice_extent < 0:
        raise UsageError(f"radius_mm must be > 0 and slice_extent >= 0, got {radius_mm}, {slice_extent}")

    points = read_keypoints(coords_csv)
    points = points[points["condition"].isin(spec.conditions)]
    wanted = None if study_ids is None else {str(s).strip() for s in study_ids}
    if wanted is not None:
        points = points[points["study_id"].isin(wanted)]

    out = prepare_dataset_folder(raw_root, dataset_id, dataset_name or spec.dataset_name, overwrite=overwrite)
    report = ConversionReport(
        dataset=out.name,
        source=str(input_dir),
        options={
            "task": task,
            "radius_mm": radius_mm,
            "slice_extent": slice_extent,
            "series_csv": str(series_csv),
            "coords_csv": str(coords_csv),
            "images_dir": str(images),
            "require_complete": require_complete,
            "study_ids": sorted(wanted) if wanted is not None else None,
            "n_folds": n_folds,
            "split_seed": split_seed,
            "labels": KEYPOINT_LABELS[task],
        },
    )
    if wanted is not None:
        for sid in sorted(wanted - set(points["study_id"])):
            report.skip(sid, f"no {task} keypoints in {coords_csv.name}")
    jobs: list[_Job] = []
    no_folder: list[str] = []
    for (study, series), rows in points.groupby(["study_id", "series_id"], sort=True):
        folder = images / study / series
        if not folder.is_dir():
            if not (images / study).is_dir():
                no_folder.append(study)
                report.skip(f"{study}/{series}", f"no folder {images / study}", quiet=True)
            else:
                report.skip(f"{study}/{series}", f"no folder {folder}")
            continue
        pts = tuple((int(r.instance_number), r.condition, r.level, float(r.x), float(r.y)) for r in rows.itertuples())
        jobs.append(
            _Job(
                task,
                study,
                series,
                folder,
                kinds.get((study, series)),
                pts,
                out,
                float(radius_mm),
                int(slice_extent),
                require_complete,
            )
        )
    if no_folder:
        uniq = sorted(set(no_folder))
        report.note(
            f"{len(uniq)} studies in {coords_csv.name} have no folder under {images} (e.g. {uniq[:3]}); skipped"
        )

    for records in map_cases(_convert_series, jobs, workers):
        for rec in records:
            if "skipped" in rec:
                report.skip(rec["item"], rec["skipped"])
            else:
                report.cases.append(rec)
                for d in rec["dropped_points"]:
                    log.warning("%s: dropped keypoint %s", rec["case_id"], d)
    if not report.cases:
        report.write(out)
        raise UsageError(
            f"{input_dir}: no {task} keypoint case converted ({len(report.skipped)} skipped); see "
            f"{out / 'spineseg_conversion.json'}"
        )
    incomplete = [c["case_id"] for c in report.cases if c["missing_labels"]]
    if incomplete:
        report.notes.append(
            f"{len(incomplete)} cases lack a keypoint for some label (left as background): {incomplete[:5]}"
        )

    write_dataset_json(
        out,
        channel_names={0: spec.channel},
        labels=KEYPOINT_LABELS[task],
        num_training=len(report.cases),
        dataset_name=dataset_name or spec.dataset_name,
        description=(
            f"RSNA 2024 lumbar spine keypoints of {', '.join(spec.conditions)} drawn as {radius_mm} mm landmark "
            f"ellipsoids (±{slice_extent} slices) on each {spec.series_kind.value} stack they were marked on."
        ),
        reference=REFERENCE,
        licence=LICENCE,
        citation=CITATION,
        spineseg_task=task,
        spineseg_radius_mm=radius_mm,
        spineseg_slice_extent=slice_extent,
    )
    write_splits(out, [c["case_id"] for c in report.cases], [c["study_id"] for c in report.cases], n_folds, split_seed)
    report.write(out)
    log.info("RSNA %s keypoints: %d cases in %s, %d skipped", task, len(report.cases), out, len(report.skipped))
    return out


def convert_rsna_spinal(
    input_dir: str | Path, raw_root: str | Path, dataset_id: int | None = None, **options: Any
) -> Path:
    """Spinal-canal keypoints on Sagittal T2/STIR → Dataset502_RSNASpinalKeypoints."""
    return convert_rsna_keypoints(input_dir, raw_root, dataset_id, task="spinal", **options)


def convert_rsna_foraminal(
    input_dir: str | Path, raw_root: str | Path, dataset_id: int | None = None, **options: Any
) -> Path:
    """Foraminal keypoints (left/right) on Sagittal T1 → Dataset504_RSNAForaminalKeypoints."""
    return convert_rsna_keypoints(input_dir, raw_root, dataset_id, task="foraminal", **options)
