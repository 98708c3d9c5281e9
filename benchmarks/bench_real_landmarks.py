"""Real-data landmark benchmark (issue #10, item 4): levels found, named right and their error in mm, on every
real volume in the data folder, with the synthetic held-out figures beside them.

Datasets (``--datasets``, default all four):

- ``rsna``: study ``rsna2024/train_images/100206310``. The model segments its Sagittal T2 (series kinds from
  ``train_series_descriptions.csv``). Truth: its five *spinal* keypoints on the Sagittal T2 against the
  predicted **canal point** of each level; its ten *foraminal* keypoints on the Sagittal T1 against the
  projected **foramen points** (``project.foramen_points``, what the crops use) and their T1 slice
  (``project_landmarks``). Keypoints come from ``train_label_coordinates.fix01b.csv`` (instance number +
  pixel x, y → LPS mm through the series' own DICOM geometry, ``Series.pixel_to_world``).
- ``myosegmentum``: ``01.mat`` … ``20.mat`` (L1–L5 vertebral bodies), loaded and placed in patient space
  exactly as ``nnunet_tasks/Dataset503_MyoSegmenTUM.py`` does (its ``load_mat``, ``to_sagittal_stack``,
  ``affine``; 1 mm isotropic). ``19.mat`` is byte-identical to ``18.mat`` and is dropped, as the converter
  drops it: 19 volumes.
- ``vb2``: all 17 files (T11–L5 bodies), same axis convention and affine as MyoSegmenTUM with
  :data:`VB2_SPACING_MM`. Its label numbers are **not** in anatomical order, and ``I`` may have one slice
  fewer than ``GT``: ``GT`` is cut to ``I``'s slices.
- ``synthetic``: ``--synthetic-studies`` studies generated with ``spine_seg.synthetic`` under seed
  ``--synthetic-seed`` (default 9000: a seed range no training recipe of this project uses; the demo and
  the other benchmarks use seeds < 3000), ``test_fraction=0`` so that every study has its true masks.
  Truth: ``truth/<study>.json``, ``landmarks_lps_mm[level]["disc_centre"]`` (scored) and
  ``["canal_centre"]`` (canal error, reported beside it).

Truth for MyoSegmenTUM and VB2: the bodies are named by their **cranio-caudal order** (centroid height in
LPS), never by their label numbers: the inferior-most body is L5 and the others count upwards (VB2: 7
bodies T11…L5; MyoSegmenTUM: L1…L5). The truth disc point of a level is the **midpoint between the
centroids of the two bodies** around it. Scored levels: l1_l2, l2_l3, l3_l4, l4_l5 (4 per volume;
L5/S1 has no body below it). VB2's T11/T12 discs are truth points too (a prediction that lands on T12/L1
is found *there*, i.e. named wrong), but are not scored levels.

Definitions, per scored truth level (``score_points``):

- **found**: some predicted level (whatever its name) lies within half a disc spacing of the truth point
  (the spacing: median distance between consecutive truth points of that volume);
- **named right**: found, and the nearest predicted level carries the truth level's name;
- **error mm**: distance from the predicted point *named* like the truth level to the truth point (None when
  the prediction has no level of that name). This is what a crop placed by name misses by, so a level named
  one off counts ≈ one disc spacing. Points: the disc point for MyoSegmenTUM, VB2 and synthetic; the canal
  point (vs the spinal keypoint) for RSNA; the foramen point (vs the foraminal keypoint) in RSNA's foramen
  table;
- **confidence**: the ``LevelLandmark.confidence`` of the level named like the truth level.

Per volume and per dataset: found/total, named-right/total, median / p90 / max error (over the levels that
have an error), the body Dice, seconds for segmentation and for landmarks. **Body Dice**: predicted
vertebral-body voxels (labels named L1–L5, T11, T12 or "vertebra") against all GT bodies, both restricted to
the cranio-caudal extent of the GT bodies (rows between the GT's first and last row along the array axis
nearest to the patient's S–I axis), so that the unlabelled T10 or sacrum of the real volumes does not count.
**Calibration**: of the predicted levels (with a scored name) whose confidence is ≥ 0.8, how many are named
right (the nearest truth point, if within half a spacing, has that name).

Model (``--model``): an nnU-Net trained-model folder (``Trainer__Plans__config`` with ``fold_*``). A volume
listed in ``--folds-json`` (``{"vb2_02": 0, "myo_01": 3, …}``, case ids ``vb2_NN``, ``myo_NN``,
``rsna_<study>``, ``synth_<study>``) is predicted by that fold's model only (the fold that held it out);
the others by ``--default-fold`` (default: ``all`` when the folder has it, else every fold as an
ensemble). The label map comes from the model's ``dataset.json``. ``--truth-masks`` scores the GT masks
themselves instead of a model (a check of the scoring: bodies-only masks must give ≈ 0 mm disc error):
RSNA then uses its spinal keypoints as landmarks (canal error 0 by construction; the foramen error is the
projection's own).

Run::

    source .venv/bin/activate
    OMP_NUM_THREADS=1 nnUNet_def_n_proc=1 python benchmarks/bench_real_landmarks.py --model RESULT_FOLDER \\
        [--folds-json folds.json] [--default-fold all] [--datasets rsna,myosegmentum,vb2,synthetic] \\
        [--limit N] [--out runs/bench_real_landmarks] [--device auto] [--mirroring superior_inferior] \\
        [--precision auto] [--tile-step 0.5] [--tile-step-si 0.75] [--slab-mm 4]
    python benchmarks/bench_real_landmarks.py --truth-masks --datasets myosegmentum,vb2

Writes ``results.json`` (every level of every volume) and ``results.md`` (the tables it prints) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared 2-core machine: keep numpy/scipy on one core

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_cases import (  # noqa: E402
    BODY_ORDER,
    DATASETS,
    DEFAULT_DATA,
    REPO,
    RSNA_STUDY,
    SCORED_LEVELS,
    SPIDER_PNG_LABELS,
    SYNTHETIC_SEED,
    VB2_SPACING_MM,
    Case,
    disc_name,
    disc_truth,
    load_myosegmentum,
    load_rsna,
    load_spider_midsag,
    load_spider_t2space,
    load_synthetic,
    load_vb2,
    load_vb2_mat,
    names_by_order,
    synthetic_cohort,
)
from bench_real_tables import CONFIDENT, _stats, summarise, tables  # noqa: E402
from bench_seg_common import fmt, log, machine, write_json  # noqa: E402

#: Re-exported: the tests and other scripts read the cases and tables through this module.
__all__ = [
    "BODY_ORDER",
    "DATASETS",
    "DEFAULT_DATA",
    "REPO",
    "RSNA_STUDY",
    "SCORED_LEVELS",
    "SYNTHETIC_SEED",
    "VB2_SPACING_MM",
    "Case",
    "disc_name",
    "disc_truth",
    "load_myosegmentum",
    "load_rsna",
    "load_synthetic",
    "load_vb2",
    "load_vb2_mat",
    "names_by_order",
    "synthetic_cohort",
    "tables",
    "summarise",
    "CONFIDENT",
]

#: Label names counted as vertebral body in a model's label map (spineseg's L1–L5, VB2-like T11/T12, or a
#: generic "vertebra"/"vertebrae"/"vertebral_body").
BODY_NAME = re.compile(r"^(L[1-5]|T1[12]|vertebra|vertebrae|vertebral_body)$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------
# predictions


def seg_label_names() -> dict[int, str]:
    from spine_seg.core.labels import SEG_LABELS

    return {v: n for n, v in SEG_LABELS.items()}


#: Label values given to VB2's T11 and T12 bodies in ``--truth-masks`` mode: spineseg's map has no thoracic
#: vertebrae, so they get names of their own (body voxels for the Dice; background for the landmark code).
THORACIC_VALUES: dict[str, int] = {"T12": 13, "T11": 14}


def truth_label_volume(case: Case) -> Any:
    """The GT as a prediction (``--truth-masks``): spineseg's label map, bodies named by their order; VB2's
    T11/T12 as extra labels (:data:`THORACIC_VALUES`), which the landmark code does not see, as it would not
    see them from a spineseg model."""
    from spine_seg.core.labels import SEG_LABELS
    from spine_seg.segmentation.predict import LabelVolume

    if case.dataset == "synthetic":
        return LabelVolume(case.gt, case.affine, seg_label_names())
    values = {**SEG_LABELS, **THORACIC_VALUES}
    labels = np.zeros(case.gt.shape, dtype=np.uint8)
    for value, name in case.body_names.items():
        labels[case.gt == value] = values[name]
    return LabelVolume(labels, case.affine, {**seg_label_names(), **{v: n for n, v in THORACIC_VALUES.items()}})


def to_seg_labels(label_volume: Any) -> np.ndarray:
    """A label volume in spineseg's values (by label *name*); names spineseg does not know become background.

    Used for level-scheme models and the truth masks (:func:`landmarks_of`)."""
    from spine_seg.core.labels import SEG_LABELS

    table = np.zeros(256, dtype=np.uint8)
    for value, name in label_volume.label_names.items():
        if name in SEG_LABELS:
            table[int(value)] = SEG_LABELS[name]
    return table[label_volume.labels]


def landmarks_of(label_volume: Any) -> Any:
    """Landmarks of a label volume: the base model's structure labels are named by counting
    (``landmarks_from_label_volume``); anything else is mapped to spineseg's level values by label name (the
    truth masks carry VB2's T11/T12 as extra values, which the landmark code must not see)."""
    from spine_seg.core.labels import label_scheme_of
    from spine_seg.landmarks import landmarks_from_labels
    from spine_seg.landmarks.structures import landmarks_from_label_volume

    try:
        scheme = label_scheme_of({str(n): int(v) for v, n in label_volume.label_names.items()})
    except ValueError:
        scheme = "other"
    if scheme == "base":
        return landmarks_from_label_volume(label_volume)
    return landmarks_from_labels(to_seg_labels(label_volume), label_volume.affine)


def body_mask(label_volume: Any) -> np.ndarray:
    values = [v for v, n in label_volume.label_names.items() if BODY_NAME.match(str(n))]
    return np.isin(label_volume.labels, values)


def restricted_dice(pred: np.ndarray, ref: np.ndarray, affine: np.ndarray) -> float | None:
    """Dice of two boolean masks over the rows the reference covers along the array axis nearest to S–I."""
    from bench_seg_common import dice

    if pred.shape != ref.shape or not ref.any():
        return None
    axis = 2 - int(np.argmax(np.abs(affine[2, :3])))  # affine column m ↔ array axis 2 - m
    idx = np.nonzero(ref.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    sl = [slice(None)] * 3
    sl[axis] = slice(int(idx[0]), int(idx[-1]) + 1)
    return dice(pred[tuple(sl)], ref[tuple(sl)])


class ModelPool:
    """Loads each fold's model once; picks the fold that held a case out (``--folds-json``) or the default."""

    def __init__(
        self,
        folder: Path,
        folds: Mapping[str, int | str],
        default_fold: str,
        device: str,
        mirroring: str | None = None,
        precision: str | None = None,
        tile_step: float | None = None,
        slab_mm: float | None = None,
        tile_step_si: float | None = None,
    ) -> None:
        from spine_seg.segmentation.predict import (
            DEFAULT_SLAB_MM,
            DEFAULT_TILE_STEP,
            DEFAULT_TILE_STEP_SI,
            mirroring_mode,
            precision_mode,
        )
        from spine_seg.segmentation.train import resolve_device

        self.folder, self.folds, self.device = Path(folder), dict(folds), device
        self.mirroring = mirroring_mode(mirroring)
        self.precision = precision_mode(precision, resolve_device(device).type)
        self.tile_step = DEFAULT_TILE_STEP if tile_step is None else float(tile_step)
        self.slab_mm = DEFAULT_SLAB_MM if slab_mm is None else float(slab_mm)
        self.tile_step_si = DEFAULT_TILE_STEP_SI if tile_step_si is None else (float(tile_step_si) or None)
        if default_fold == "auto":
            self.default: int | str | None = "all" if (self.folder / "fold_all").is_dir() else None
        else:
            self.default = None if default_fold == "ensemble" else default_fold
        self._models: dict[str, Any] = {}

    def fold_of(self, case_id: str) -> int | str | None:
        return self.folds.get(case_id, self.default)

    def model_for(self, case_id: str) -> tuple[Any, str]:
        from spine_seg.segmentation.predict import SegmentationModel

        fold = self.fold_of(case_id)
        if case_id not in self.folds and case_id.startswith(("myo_", "vb2_")):
            log(
                f"warning: {case_id} is not in --folds-json: predicted by fold {fold or 'ensemble'}; its score is "
                "meaningless if the model trained on it"
            )
        key = "ensemble" if fold is None else str(fold)
        if key not in self._models:
            t0 = time.perf_counter()
            self._models[key] = SegmentationModel.from_folder(
                self.folder,
                fold=fold,
                device=self.device,
                mirroring=self.mirroring,
                precision=self.precision,
                tile_step_size=self.tile_step,
                tile_step_si=self.tile_step_si,
                slab_mm=self.slab_mm,
            )
            log(f"loaded {self._models[key]!r} in {time.perf_counter() - t0:.1f} s")
        return self._models[key], key


#: ``--reuse-predictions DIR``: raw label volumes are kept there and reused, so that a change to the naming
#: stage is re-scored in seconds instead of re-running the network (the key names the model folder and fold).
PREDICTION_CACHE: Path | None = None


def _cache_path(case: Case, pool: ModelPool) -> Path | None:
    if PREDICTION_CACHE is None:
        return None
    key = (
        f"{pool.folder.resolve()}|{pool.fold_of(case.case_id)}|{pool.slab_mm}|{pool.mirroring}|{pool.precision}"
        f"|{pool.tile_step}|{pool.tile_step_si}"
    )
    import hashlib

    return PREDICTION_CACHE / f"{case.case_id}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def predict(case: Case, pool: ModelPool | None) -> tuple[Any, str, float]:
    """(label volume, fold used, segmentation seconds) of a case; the GT itself under ``--truth-masks``."""
    from spine_seg.segmentation.predict import LabelVolume

    if pool is None:
        return truth_label_volume(case), "truth", 0.0
    cached = _cache_path(case, pool)
    if cached is not None and cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            names = {int(k): str(v) for k, v in zip(z["name_ids"], z["names"], strict=True)}
            return LabelVolume(z["labels"], z["affine"], names), str(z["fold"]), float(z["seg_seconds"])
    model, fold = pool.model_for(case.case_id)
    t0 = time.perf_counter()
    if case.stack is not None:
        lv = model.predict_stack(case.stack)
    else:
        # the 1 mm volumes go in whole: predict_array averages them into slabs (--slab-mm) as it does any thin
        # series, and gives each 1 mm slice its slab's labels (truth and Dice stay on the original grid)
        spacing = tuple(float(s) for s in np.linalg.norm(case.affine[:3, :3], axis=0))
        lv = LabelVolume(model.predict_array(case.image, spacing, case.affine), case.affine, model.label_names)
    seconds = time.perf_counter() - t0
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        names = dict(lv.label_names or {})
        np.savez_compressed(
            cached,
            labels=np.asarray(lv.labels, dtype=np.uint8),
            affine=np.asarray(lv.affine),
            name_ids=np.array(list(names), dtype=int),
            names=np.array(list(names.values())),
            fold=fold,
            seg_seconds=seconds,
        )
    return lv, fold, seconds


# ---------------------------------------------------------------------------------------------------------
# scoring


def score_points(
    predicted: Mapping[str, tuple[np.ndarray, float]],
    truth: Mapping[str, np.ndarray],
    scored: Iterable[str],
) -> dict[str, Any]:
    """Score predicted points (name → (xyz, confidence)) against truth points (name → xyz); see the module
    docstring for found / named right / error / calibration. Returns ``{"levels": …, "predicted": …}``."""
    names = list(truth)
    pts = np.array([np.asarray(truth[n], float) for n in names])
    gaps = [float(np.linalg.norm(a - b)) for a, b in zip(pts, pts[1:], strict=False)]
    half = 0.5 * float(np.median(gaps)) if gaps else float("inf")
    pred_names = list(predicted)
    pred_pts = np.array([np.asarray(predicted[n][0], float) for n in pred_names]) if pred_names else np.zeros((0, 3))
    levels = {}
    for lv in scored:
        if lv not in truth:
            continue
        t = np.asarray(truth[lv], float)
        d = np.linalg.norm(pred_pts - t, axis=1) if len(pred_names) else np.zeros(0)
        found = bool(len(d) and d.min() <= half)
        nearest = pred_names[int(np.argmin(d))] if len(d) else None
        same = predicted.get(lv)
        levels[lv] = {
            "found": found,
            "named_right": bool(found and nearest == lv),
            "nearest_predicted": nearest,
            "nearest_mm": round(float(d.min()), 2) if len(d) else None,
            "error_mm": None if same is None else round(float(np.linalg.norm(np.asarray(same[0], float) - t)), 2),
            "confidence": None if same is None else round(float(same[1]), 3),
            "truth_xyz_lps_mm": [round(float(v), 2) for v in t],
            "predicted_xyz_lps_mm": None if same is None else [round(float(v), 2) for v in np.asarray(same[0], float)],
        }
    scored_set = set(scored)
    preds = []
    for n, (xyz, conf) in predicted.items():
        if n not in scored_set:
            continue
        d = np.linalg.norm(pts - np.asarray(xyz, float), axis=1)
        i = int(np.argmin(d))
        preds.append(
            {
                "level": n,
                "confidence": round(float(conf), 3),
                "right": bool(d[i] <= half and names[i] == n),
                "nearest_truth": names[i] if d[i] <= half else None,
            }
        )
    return {"half_spacing_mm": round(half, 2), "levels": levels, "predicted": preds}


def run_case(case: Case, pool: ModelPool | None) -> dict[str, Any]:
    """Predict (or take the GT), find landmarks, score: one volume's record."""
    if case.dataset == "rsna" and pool is None:
        return score_prediction(case, None, "keypoints")
    lv, fold, seg_s = predict(case, pool)
    return score_prediction(case, lv, fold, seg_s)


def score_prediction(case: Case, lv: Any, fold: str, seg_s: float = 0.0) -> dict[str, Any]:
    """Landmarks of a label volume ``lv`` (a ``LabelVolume`` on the case's grid) scored against the case's
    truth. ``lv=None`` (RSNA under ``--truth-masks``): the spinal keypoints themselves are the landmarks."""
    from spine_seg.landmarks import landmarks_from_points

    rsna_truth = lv is None
    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "case_id": case.case_id,
        "dataset": case.dataset,
        "fold": fold,
        "shape_kji": list(case.stack.shape if lv is None else lv.shape),
    }
    error = None
    if rsna_truth:  # no mask: the keypoints themselves as landmarks (checks the scoring and projection path)
        ls = landmarks_from_points(case.truth)
    else:
        try:
            ls = landmarks_of(lv)
        except (ValueError, KeyError, IndexError, np.linalg.LinAlgError) as exc:  # an unreadable mask: nothing found
            ls, error = None, f"{type(exc).__name__}: {exc}"
    lm_s = time.perf_counter() - t0
    rec.update(seg_seconds=round(seg_s, 2), landmark_seconds=round(lm_s, 2), landmark_error=error)
    levels = ls.levels if ls is not None else ()
    use_canal = case.dataset == "rsna"
    predicted = {lm.level: (lm.canal_xyz if use_canal else lm.disc_xyz, lm.confidence) for lm in levels}
    rec["point"] = "canal vs spinal keypoint" if use_canal else "disc point vs truth disc"
    rec.update(score_points(predicted, case.truth, case.scored))
    if ls is not None:
        rec.update(
            unsure=ls.unsure,
            anchor=ls.anchor,
            source=ls.source,
            warnings=list(ls.warnings),
            found_names=list(ls.found_levels),
        )
    if case.dataset == "synthetic":
        canal = {lm.level: (lm.canal_xyz, lm.confidence) for lm in levels}
        rec["canal"] = score_points(canal, case.extra["canal"], case.scored)["levels"]
    if case.dataset == "rsna" and ls is not None:
        rec["foramina"] = score_foramina(ls, case)
    if case.dataset == "spider_t2space" and lv is not None:
        rec["dice"] = spider_dice(case, lv)
        rec["body_dice"] = rec["dice"]["vertebra"]
    else:
        rec["body_dice"] = None if lv is None or case.gt is None else _round(case_dice(case, lv))
    if case.dataset == "spider_midsag" and lv is not None:
        rec["disc_count"] = {"predicted": predicted_disc_count(lv), "overview": case.extra["num_discs"]}
    errs = [v["error_mm"] for v in rec["levels"].values() if v["error_mm"] is not None]
    rec["summary"] = {
        "total": len(rec["levels"]),
        "found": sum(v["found"] for v in rec["levels"].values()),
        "named_right": sum(v["named_right"] for v in rec["levels"].values()),
        **{f"error_{k}_mm": v for k, v in _stats(errs).items()},
    }
    return rec


def spider_dice(case: Case, lv: Any) -> dict[str, float | None]:
    """Dice of vertebra, disc and canal on a SPIDER slice against its mask, over the rows from the mask's
    highest labelled voxel down to its lowest disc's bottom: the unlabelled sacrum below does not count. The
    mask's "vertebra" is the whole vertebra (posterior elements too), the base model's the body."""
    from bench_seg_common import dice

    from spine_seg.core.labels import BASE_LABELS

    names = {str(n): int(v) for v, n in lv.label_names.items()}
    disc_value = next(v for v, n in SPIDER_PNG_LABELS.items() if n == "disc")
    rows = np.nonzero((case.gt > 0).any(axis=(0, 2)))[0]
    disc_rows = np.nonzero((case.gt == disc_value).any(axis=(0, 2)))[0]
    if not len(rows) or not len(disc_rows):
        return {n: None for n in ("vertebra", "disc", "spinal_canal")}
    band = slice(int(rows[0]), int(disc_rows[-1]) + 1)
    out: dict[str, float | None] = {}
    for value, name in SPIDER_PNG_LABELS.items():
        pred = lv.labels == names.get(name, BASE_LABELS[name])
        out[name] = _round(dice(pred[:, band], case.gt[:, band] == value))
    return out


def predicted_disc_count(lv: Any) -> int:
    """Disc components of a one-slice prediction at least a fifth the size of the median of the five largest."""
    from scipy import ndimage

    names = {str(n): int(v) for v, n in lv.label_names.items()}
    cc, n = ndimage.label(lv.labels == names.get("disc", -1), structure=np.ones((3, 3, 3), bool))
    if not n:
        return 0
    sizes = np.bincount(cc.ravel())[1:]
    return int((sizes >= 0.2 * float(np.median(np.sort(sizes)[::-1][:5]))).sum())


def case_dice(case: Case, lv: Any) -> float | None:
    """Body Dice of a prediction against the case's GT bodies (synthetic: L1–L5 of the true T2 mask, brought
    onto the DICOM stack's grid, whose slice order may run the other way)."""
    from spine_seg.core.labels import SEG_LABELS

    if case.body_names:
        gt_body = np.isin(case.gt, list(case.body_names))
    else:
        gt_body = np.isin(case.gt, [SEG_LABELS[n] for n in ("L1", "L2", "L3", "L4", "L5")])
    if gt_body.shape == lv.shape and np.allclose(lv.affine, case.affine, atol=1e-2):
        return restricted_dice(body_mask(lv), gt_body, case.affine)
    from bench_seg_synthetic import aligned

    ref = aligned(lv.labels, lv.affine, gt_body, case.affine)
    return None if ref is None else restricted_dice(body_mask(lv), ref, lv.affine)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def score_foramina(ls: Any, case: Case) -> list[dict[str, Any]]:
    """RSNA: each foraminal keypoint against the projected foramen point of the level named like it."""
    from spine_seg.landmarks.project import foramen_points, project_landmarks

    proj = project_landmarks(ls, case.study)
    out = []
    for (level, side), kp in sorted(case.extra["foramina"].items()):
        lm = ls.get(level)
        rec: dict[str, Any] = {
            "level": level,
            "side": side,
            "annotated_instance": kp["instance_number"],
            "error_mm": None,
            "instance": None,
        }
        if lm is not None:
            rec["error_mm"] = round(float(np.linalg.norm(foramen_points(lm)[side] - kp["xyz"])), 2)
            p = proj.foramen(level, side)
            rec["instance"] = None if p is None else p.instance_number
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------------------


def cases(
    datasets: Sequence[str], data: Path, limit: int | None, workdir: Path, synth_n: int, synth_seed: int
) -> Iterator[Case]:
    for name in datasets:
        if name == "rsna":
            yield load_rsna(data / "rsna2024")
        elif name == "myosegmentum":
            yield from load_myosegmentum(data / "myosegmentum", limit)
        elif name == "vb2":
            yield from load_vb2(data / "vb2", limit)
        elif name == "synthetic":
            n = synth_n if limit is None else min(synth_n, limit)
            yield from load_synthetic(synthetic_cohort(workdir, n, synth_seed))
        elif name == "spider_t2space":
            yield from load_spider_t2space(data, limit)
        elif name == "spider_midsag":
            yield from load_spider_midsag(data, limit)


def run(
    datasets: Sequence[str],
    data: Path,
    pool: ModelPool | None,
    limit: int | None = None,
    workdir: Path = REPO / "runs" / "bench_real_landmarks",
    synth_n: int = 10,
    synth_seed: int = SYNTHETIC_SEED,
) -> dict[str, Any]:
    """Score every case of ``datasets``; returns the results document (volumes + per-dataset summaries)."""
    records = []
    for case in cases(datasets, data, limit, workdir, synth_n, synth_seed):
        rec = run_case(case, pool)
        s = rec["summary"]
        log(
            f"{case.case_id} (fold {rec['fold']}): found {s['found']}/{s['total']}, named right {s['named_right']}, "
            f"median {fmt(s['error_median_mm'], 2)} mm, max {fmt(s['error_max_mm'], 2)} mm, "
            f"Dice {fmt(rec['body_dice'])}, "
            f"{rec['seg_seconds']} + {rec['landmark_seconds']} s"
        )
        records.append(rec)
    by = {
        name: summarise([r for r in records if r["dataset"] == name])
        for name in datasets
        if any(r["dataset"] == name for r in records)
    }
    return {"volumes": records, "datasets": by}


def main(argv: Sequence[str] | None = None) -> None:
    from spine_seg.segmentation.predict import (
        DEFAULT_MIRRORING,
        DEFAULT_PRECISION,
        DEFAULT_SLAB_MM,
        DEFAULT_TILE_STEP,
        DEFAULT_TILE_STEP_SI,
        MIRRORING_MODES,
        PRECISIONS,
    )

    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="nnU-Net trained-model folder (Trainer__Plans__config with fold_*)")
    src.add_argument("--truth-masks", action="store_true", help="score the GT masks themselves (checks the scoring)")
    ap.add_argument("--folds-json", type=Path, help='{"vb2_02": 0, "myo_01": 3, ...}: the fold that held each case out')
    ap.add_argument(
        "--default-fold",
        default="auto",
        help="fold for cases not in --folds-json: a fold, 'ensemble' (every fold) or 'auto' "
        "(all if present, else ensemble)",
    )
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of %(default)s")
    ap.add_argument("--limit", type=int, help="at most N volumes per dataset")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_real_landmarks", help="results folder")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "runs" / "bench_real_landmarks",
        help="where the synthetic cohort is generated (reused)",
    )
    ap.add_argument("--synthetic-studies", type=int, default=10)
    ap.add_argument("--synthetic-seed", type=int, default=SYNTHETIC_SEED)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument(
        "--slab-mm",
        type=float,
        default=DEFAULT_SLAB_MM,
        help="thin slices (MyoSegmenTUM/VB2 are 1 mm isotropic) are predicted as slabs this thick, as predict "
        "does, like a clinical sagittal series; 0 keeps the thin slices (default: %(default)s)",
    )
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="network arithmetic on a CPU (spine_seg.segmentation.predict; default: %(default)s)",
    )
    ap.add_argument(
        "--tile-step",
        type=float,
        default=DEFAULT_TILE_STEP,
        help="nnU-Net's sliding-window step, a fraction of the patch (default: %(default)s)",
    )
    ap.add_argument(
        "--tile-step-si",
        type=float,
        default=DEFAULT_TILE_STEP_SI,
        help="the step along the patient's S-I axis in a 2d model; 0: --tile-step (default: %(default)s)",
    )
    ap.add_argument(
        "--mirroring",
        choices=MIRRORING_MODES,
        default=DEFAULT_MIRRORING,
        help="test-time mirroring of the segmentation (spine_seg.segmentation.predict; default: %(default)s)",
    )
    ap.add_argument(
        "--reuse-predictions",
        type=Path,
        metavar="DIR",
        help="keep each volume's raw segmentation in DIR and reuse it on the next run (re-scores a change "
        "to the naming stage without the network; the segmentation seconds are the first run's)",
    )
    args = ap.parse_args(argv)
    global PREDICTION_CACHE
    PREDICTION_CACHE = args.reuse_predictions
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown}; valid: {list(DATASETS)}")
    folds = {}
    if args.folds_json is not None:
        folds = json.loads(args.folds_json.read_text(encoding="utf-8"))
        if not isinstance(folds, dict):
            raise SystemExit(f"{args.folds_json}: expected a JSON object {{case_id: fold}}")
    pool = (
        None
        if args.truth_masks
        else ModelPool(
            args.model,
            folds,
            args.default_fold,
            args.device,
            args.mirroring,
            args.precision,
            args.tile_step,
            args.slab_mm,
            args.tile_step_si,
        )
    )
    t0 = time.perf_counter()
    doc = {
        "benchmark": "bench_real_landmarks",
        "machine": machine(),
        "args": {k: (None if v is None else str(v)) for k, v in vars(args).items()},
        "folds": folds,
    }
    doc.update(run(datasets, args.data, pool, args.limit, args.workdir, args.synthetic_studies, args.synthetic_seed))
    unused = sorted(set(folds) - {r["case_id"] for r in doc["volumes"]})
    if unused and args.limit is None:
        log(f"warning: --folds-json names cases not scored here: {unused}")
    doc["wall_seconds"] = round(time.perf_counter() - t0, 1)
    text = tables(doc)
    write_json(args.out / "results.json", doc)
    (args.out / "results.md").write_text(text + "\n", encoding="utf-8")
    print()
    print(text)
    print(f"\nresults: {args.out}/results.json, results.md  (wall {doc['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
