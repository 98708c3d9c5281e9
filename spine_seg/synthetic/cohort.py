"""Generate a synthetic cohort in the competition's exact layout, with exact ground truth.

Layout of ``out/`` (competition files at the top, ground truth kept apart under ``truth/``)::

    train_images/<study>/<series>/<instance>.dcm   test_images/<study>/<series>/<instance>.dcm
    train.csv  train_series_descriptions.csv  train_label_coordinates.csv
    test_series_descriptions.csv  sample_submission.csv
    truth/<study>.json  truth/test_labels.csv  truth/test_label_coordinates.csv
    spider/images/<n>_t1.mha  spider/masks/<n>_t1.mha  (…_t2)  spider/overview.csv
    previews/<study>.png (with preview=True)   cohort.json

Each study draws its own generator from ``SeedSequence([seed, index])``, so a cohort is reproducible byte
for byte and a study does not change when the cohort around it grows.

The series' acquisition geometry is :mod:`spine_seg.synthetic.acquisition`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spine_seg.core import geometry
from spine_seg.core.constants import (
    CONDITIONS,
    LEVELS,
    SERIES_KIND_OF_CONDITION,
    SEVERITIES,
    SEVERITY_FROM_LABEL,
    SEVERITY_LABELS,
    SIDES,
    TARGET_COLUMNS,
    SeriesKind,
    kaggle_condition,
    kaggle_level,
    row_ids,
)
from spine_seg.core.errors import UsageError
from spine_seg.core.labels import SPIDER_DISC_OFFSET, SPIDER_PARTIAL_OFFSET, SYNTHETIC_SACRUM
from spine_seg.core.versions import __version__
from spine_seg.dicom.write import WRITABLE_SYNTAXES, write_stack
from spine_seg.synthetic import severity as sevmod
from spine_seg.synthetic.acquisition import Acquisition, _axial, _rotation, _sagittal, _sagittal_plan, _series_id
from spine_seg.synthetic.anatomy import NARROWING_RANGE, NUCLEUS, Anatomy, mark_partial
from spine_seg.synthetic.render import render

log = logging.getLogger(__name__)


AXIAL_MODES = ("blocks", "stack", "mixed")


@dataclass(frozen=True)
class CohortConfig:
    """Everything that shapes a cohort; saved in cohort.json."""

    n_studies: int = 5
    seed: int = 0
    test_fraction: float = 0.2
    label_noise: float = 0.0
    correlation: float = 0.35
    missing_series_rate: float = 0.0
    extra_series_rate: float = 0.0
    axial_mode: str = "mixed"
    syntax: str = "rle"
    sagittal_matrix: int = 256
    axial_matrix: int = 176
    spider: bool = True
    preview: bool = False
    priors_csv: str | None = None

    def __post_init__(self) -> None:
        if self.n_studies < 1:
            raise UsageError(f"n_studies must be at least 1, got {self.n_studies}")
        if self.axial_mode not in AXIAL_MODES:
            raise UsageError(f"unknown axial mode {self.axial_mode!r}; valid: {list(AXIAL_MODES)}")
        if self.syntax not in WRITABLE_SYNTAXES:
            raise UsageError(f"unknown transfer syntax {self.syntax!r}; valid: {list(WRITABLE_SYNTAXES)}")
        for name in ("test_fraction", "missing_series_rate", "extra_series_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.label_noise < 1:
            raise UsageError(f"label_noise must be in [0, 1), got {self.label_noise}")


@dataclass(frozen=True)
class CohortResult:
    out: Path
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    seconds: float
    bytes_written: int


def _narrowing(sev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lo = np.array([NARROWING_RANGE[s][0] for s in SEVERITIES])[sev]
    hi = np.array([NARROWING_RANGE[s][1] for s in SEVERITIES])[sev]
    return rng.uniform(lo, hi)


def sample_anatomy(rng: np.random.Generator, sev: np.ndarray) -> Anatomy:
    """Per-study anatomy with the pathology of ``sev`` [condition, level] realised as narrowing."""
    scale = rng.uniform(0.88, 1.08)
    jitter = lambda n: rng.uniform(0.95, 1.05, n)  # noqa: E731
    degeneration = np.clip(0.15 + 0.3 * sev[0] + 0.08 * (sev[1] + sev[2]) + rng.normal(0, 0.08, 5), 0, 1)
    disc = np.array([6.0, 6.5, 7.5, 8.5, 9.5, 10.5, 9.5]) * scale * jitter(7)
    disc[2:] *= 1 - 0.3 * degeneration
    return Anatomy(
        rotation=_rotation(rng, 3.0),
        origin_lps_mm=np.array([rng.uniform(-15, 15), rng.uniform(40, 90), rng.uniform(-650, -350)]),
        radius_mm=float(rng.uniform(260, 480)),
        sacral_kink_rad=float(np.radians(rng.uniform(15, 30))),
        body_height_mm=np.array([23.0, 24.0, 25.0, 26.5, 27.5, 28.0, 27.5]) * scale * jitter(7),
        disc_height_mm=disc,
        body_depth_mm=np.array([29.0, 30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0]) * scale,
        body_width_mm=np.array([38.0, 40.0, 42.0, 44.0, 46.0, 48.0, 50.0, 52.0]) * scale,
        canal_ap_mm=float(rng.uniform(13, 17)),
        canal_width_mm=float(rng.uniform(19, 24)),
        trunk_ap_mm=float(rng.uniform(190, 260)),
        trunk_width_mm=float(rng.uniform(300, 380)),
        fat_mm=float(rng.uniform(10, 35)),
        back_mm=float(rng.uniform(85, 115)),
        spinal_narrowing=_narrowing(sev[0], rng),
        foraminal_narrowing=_narrowing(sev[1:3], rng),
        subarticular_narrowing=_narrowing(sev[3:5], rng),
        disc_degeneration=degeneration,
        texture_phase=rng.uniform(0, 2 * np.pi, 6),
    )


def _voxel_xyz(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    k, j, i = (np.arange(n, dtype=np.float32) for n in shape)
    a = affine.astype(np.float32)
    return (
        a[:3, 3]
        + k[:, None, None, None] * a[:3, 2]
        + j[None, :, None, None] * a[:3, 1]
        + i[None, None, :, None] * a[:3, 0]
    )


def _tissue_stack(anat: Anatomy, affine: np.ndarray, shape, want_labels: bool):
    """Tissue, SPIDER labels, coil bias and per-voxel disc degeneration on one stack's grid."""
    xyz = _voxel_xyz(affine, shape)
    tissue, labels = anat.tissue(xyz, want_labels=want_labels)
    l3 = anat.to_world(0.0, 0.0, 0.0).astype(np.float32)
    dy = (xyz[..., 1] - l3[1]) / 100.0
    dz = (xyz[..., 2] - l3[2]) / 130.0
    bias = np.clip(1.0 + 0.22 * dy - 0.18 * dz * dz, 0.45, 1.5).astype(np.float32)
    # degenerated discs lose T2 signal: map each nucleus voxel to its level by the nearest disc centre
    nucleus_level = np.zeros(shape, dtype=np.float32)
    nuc = tissue == NUCLEUS
    if nuc.any():
        sn, _, _ = anat.frame_coords(xyz[nuc])
        centres = np.array([anat.disc_centre_s(lv) for lv in LEVELS], dtype=np.float32)
        nearest = np.abs(sn[:, None] - centres[None, :]).argmin(axis=1)
        dist = np.abs(sn - centres[nearest])
        nucleus_level[nuc] = np.where(dist < 15, anat.disc_degeneration[nearest], 0.1)
    return tissue, labels, bias, nucleus_level


def _nearest_slice(acq: Acquisition, xyz: np.ndarray) -> tuple[int, float, float, float]:
    """(instance_number, x_px, y_px, distance_mm) of the slice nearest a world point over all stacks."""
    best = None
    first_instance = 1
    for affine, shape in acq.stacks:
        i, j, k = geometry.world_to_voxel(affine, xyz)
        kk = int(np.clip(np.rint(k), 0, shape[0] - 1))
        dist = abs(k - kk) * float(np.linalg.norm(affine[:3, 2]))
        if best is None or dist < best[3]:
            best = (first_instance + kk, float(i), float(j), dist)
        first_instance += shape[0]
    assert best is not None
    return best


def _write_mha(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    import SimpleITK as sitk

    img = geometry.set_sitk_geometry(sitk.GetImageFromArray(volume), affine, unshear=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def generate_study(
    index: int, study_id: str, folder: Path, cfg: CohortConfig, p: np.ndarray, blanks: np.ndarray
) -> dict:
    """Render, write and label one study; returns its truth record (also written by the caller).

    Long on purpose: one study rendered, written and labelled; the steps share the study's state.
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
    sev_true = sevmod.sample_severities(p, rng, cfg.correlation)
    sev_label = sevmod.add_label_noise(sev_true, cfg.label_noise, rng)
    anat = sample_anatomy(rng, sev_true)
    vendor = float(rng.choice([0.3, 0.45, 0.7, 1.1]))  # per-"vendor" scale; the real study spans ~0–1800
    used: set[str] = set()

    # which axial levels the acquisition reaches (blank subarticular grades where it does not)
    covered = [lv for i, lv in enumerate(LEVELS) if rng.random() >= blanks[3:, i].max()]
    if not covered:
        covered = [LEVELS[3]]
    mode = cfg.axial_mode if cfg.axial_mode != "mixed" else ("blocks" if rng.random() < 0.6 else "stack")
    t2_seq = "STIR" if rng.random() < 0.2 else "T2"
    plan_t1 = _sagittal_plan(rng)
    plan_t2 = plan_t1 if rng.random() < 0.7 else _sagittal_plan(rng)
    t1 = _sagittal(anat, rng, cfg.sagittal_matrix, _series_id(rng, used), SeriesKind.SAGITTAL_T1, "T1", plan_t1)
    same = t1 if plan_t2 is plan_t1 and rng.random() < 0.6 else None
    acqs = [
        t1,
        _sagittal(anat, rng, cfg.sagittal_matrix, _series_id(rng, used), SeriesKind.SAGITTAL_T2, t2_seq, plan_t2, same),
        _axial(anat, rng, cfg.axial_matrix, _series_id(rng, used), mode, covered),
    ]
    missing = None
    if rng.random() < cfg.missing_series_rate:
        missing = [SeriesKind.SAGITTAL_T1, SeriesKind.SAGITTAL_T2, SeriesKind.AXIAL_T2][int(rng.integers(0, 3))]
        acqs = [a for a in acqs if a.kind is not missing]
    extra = None
    if rng.random() < cfg.extra_series_rate:
        extra = _axial(anat, rng, cfg.axial_matrix, _series_id(rng, used), "stack", covered)
        acqs.append(extra)

    study_dir = folder / study_id
    volumes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    axial_volumes: list[tuple[np.ndarray, np.ndarray, int]] = []  # (pixels, affine, first instance)
    grids: dict[tuple[bytes, tuple[int, ...]], tuple] = {}
    series_truth = []
    for acq in acqs:
        instance = 1
        want = cfg.spider and acq.kind in (SeriesKind.SAGITTAL_T1, SeriesKind.SAGITTAL_T2)
        for affine, shape in acq.stacks:
            key = (affine.tobytes(), tuple(shape))
            if key not in grids:  # T1 and T2 planned on the same grid share one phantom evaluation
                grids[key] = _tissue_stack(anat, affine, shape, want)
            tissue, labels, bias, nucleus_level = grids[key]
            pixels = render(tissue, acq.sequence, rng, nucleus_level=nucleus_level, bias=bias, vendor_scale=vendor)
            write_stack(
                study_dir / acq.series_id,
                pixels,
                affine,
                study_id=study_id,
                series_id=acq.series_id,
                first_instance=instance,
                series_description="T1" if acq.sequence == "T1" else "T2",
                slice_thickness_mm=acq.thickness_mm,
                syntax=cfg.syntax,
            )
            if acq is not extra:
                if acq.kind is SeriesKind.AXIAL_T2:
                    axial_volumes.append((pixels, affine, instance))
                else:
                    volumes[acq.kind.value] = (pixels, affine, labels)
            instance += shape[0]
        series_truth.append(
            {
                "series_id": acq.series_id,
                "kind": acq.kind.value,
                "sequence": acq.sequence,
                "thickness_mm": round(acq.thickness_mm, 3),
                "stacks": [
                    {"affine": np.round(a, 5).tolist(), "shape": list(sh), "level": lv}
                    for (a, sh), lv in zip(acq.stacks, acq.block_levels or [None] * len(acq.stacks), strict=True)
                ],
                "extra": acq is extra,
            }
        )

    landmarks = anat.landmarks()
    by_kind = {a.kind: a for a in acqs if a is not extra}
    coords = []
    for condition in CONDITIONS:
        kind = SERIES_KIND_OF_CONDITION[condition]
        acq = by_kind.get(kind)
        if acq is None:
            continue
        for lv in LEVELS:
            if kind is SeriesKind.AXIAL_T2 and lv not in covered:
                continue
            side = next((sd for sd in SIDES if condition.startswith(sd)), None)
            key = (
                "spinal_keypoint"
                if side is None
                else (f"{side}_foramen" if "foraminal" in condition else f"{side}_subarticular")
            )
            inst, x, y, _ = _nearest_slice(acq, np.array(landmarks[lv][key]))
            coords.append(
                {
                    "study_id": int(study_id),
                    "series_id": int(acq.series_id),
                    "instance_number": inst,
                    "condition": kaggle_condition(condition),
                    "level": kaggle_level(lv),
                    "x": round(x, 4),
                    "y": round(y, 4),
                }
            )
    grades = {}
    for c, condition in enumerate(CONDITIONS):
        for i, lv in enumerate(LEVELS):
            blank = "subarticular" in condition and lv not in covered
            grades[f"{condition}_{lv}"] = None if blank else SEVERITY_LABELS[SEVERITIES[int(sev_label[c, i])]]
    truth = {
        "study_id": study_id,
        "generator": {"name": "spineseg.synthetic", "version": __version__, "seed": cfg.seed, "index": index},
        "series": series_truth,
        "missing_series": missing.value if missing else None,
        "axial_mode": mode,
        "axial_levels": covered,
        "landmarks_lps_mm": landmarks,
        "vertebra_centres_lps_mm": anat.vertebra_centres(),
        "severity_true": {
            f"{c}_{lv}": SEVERITIES[int(sev_true[ci, li])]
            for ci, c in enumerate(CONDITIONS)
            for li, lv in enumerate(LEVELS)
        },
        "severity_label": {k: (None if v is None else SEVERITY_FROM_LABEL[v]) for k, v in grades.items()},
        "label_noise": cfg.label_noise,
        "anatomy": {
            "radius_mm": round(anat.radius_mm, 3),
            "sacral_kink_deg": round(float(np.degrees(anat.sacral_kink_rad)), 3),
            "canal_ap_mm": round(anat.canal_ap_mm, 3),
            "canal_width_mm": round(anat.canal_width_mm, 3),
            "spinal_narrowing": np.round(anat.spinal_narrowing, 4).tolist(),
            "foraminal_narrowing": {
                sd: np.round(anat.foraminal_narrowing[i], 4).tolist() for i, sd in enumerate(SIDES)
            },
            "subarticular_narrowing": {
                sd: np.round(anat.subarticular_narrowing[i], 4).tolist() for i, sd in enumerate(SIDES)
            },
            "disc_degeneration": np.round(anat.disc_degeneration, 4).tolist(),
            "vendor_scale": vendor,
        },
    }
    return {
        "truth": truth,
        "grades": grades,
        "coords": coords,
        "volumes": volumes,
        "axial": axial_volumes,
        "acqs": acqs,
    }


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def generate_cohort(
    out: str | Path,
    cfg: CohortConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> CohortResult:
    """Write a cohort to ``out``; built in a sibling ``.partial`` folder and moved into place at the end.

    Long on purpose: the cohort's files written in order; each is a few lines of its own.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: folder is not empty; choose another --out or pass --overwrite")
        if not (out / "cohort.json").exists():
            raise FileExistsError(
                f"{out}: not empty and holds no cohort.json; refusing to overwrite what is not a cohort"
            )
    counts = sevmod.load_counts(cfg.priors_csv)
    p, blanks = sevmod.probabilities(counts), sevmod.blank_rates(counts)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()

    id_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 10**6]))
    ids: list[str] = []
    while len(ids) < cfg.n_studies:  # competition-like 7–9 digit ids, unique
        sid = str(int(id_rng.integers(10**6, 10**9)))
        if sid not in ids:
            ids.append(sid)
    n_test = int(round(cfg.n_studies * cfg.test_fraction))
    if cfg.n_studies > 1 and cfg.test_fraction > 0:
        n_test = min(max(n_test, 1), cfg.n_studies - 1)
    test_ids = set(id_rng.choice(ids, size=n_test, replace=False).tolist()) if n_test else set()

    grade_rows = {"train": [], "test": []}
    coord_rows = {"train": [], "test": []}
    desc_rows = {"train": [], "test": []}
    spider_rows = []
    for index, study_id in enumerate(ids):
        split = "test" if study_id in test_ids else "train"
        rec = generate_study(index, study_id, tmp / f"{split}_images", cfg, p, blanks)
        rec["truth"]["split"] = split
        _write_json(tmp / "truth" / f"{study_id}.json", rec["truth"])
        grade_rows[split].append({"study_id": int(study_id), **rec["grades"]})
        coord_rows[split].extend(rec["coords"])
        desc_rows[split].extend(
            {"study_id": int(study_id), "series_id": int(a.series_id), "series_description": a.kind.value}
            for a in rec["acqs"]
        )
        if cfg.spider and split == "train":
            spider_rows.extend(_write_spider(tmp / "spider", len(spider_rows) // 2 + 1, study_id, rec))
        if cfg.preview:
            from spine_seg.synthetic.preview import write_preview

            write_preview(tmp / "previews" / f"{study_id}.png", rec)
        if progress is not None:
            progress(index + 1, cfg.n_studies, study_id)

    cols = ["study_id", *TARGET_COLUMNS]
    coord_cols = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    desc_cols = ["study_id", "series_id", "series_description"]
    pd.DataFrame(grade_rows["train"], columns=cols).to_csv(tmp / "train.csv", index=False)
    pd.DataFrame(coord_rows["train"], columns=coord_cols).to_csv(tmp / "train_label_coordinates.csv", index=False)
    pd.DataFrame(desc_rows["train"], columns=desc_cols).to_csv(tmp / "train_series_descriptions.csv", index=False)
    pd.DataFrame(desc_rows["test"], columns=desc_cols).to_csv(tmp / "test_series_descriptions.csv", index=False)
    sub = [
        {"row_id": r, "normal_mild": 1 / 3, "moderate": 1 / 3, "severe": 1 / 3}
        for sid in sorted(test_ids, key=ids.index)
        for r in row_ids(sid)
    ]
    pd.DataFrame(sub, columns=["row_id", *SEVERITIES]).to_csv(tmp / "sample_submission.csv", index=False)
    pd.DataFrame(grade_rows["test"], columns=cols).to_csv(tmp / "truth" / "test_labels.csv", index=False)
    pd.DataFrame(coord_rows["test"], columns=coord_cols).to_csv(
        tmp / "truth" / "test_label_coordinates.csv", index=False
    )
    if cfg.spider:
        pd.DataFrame(spider_rows).to_csv(tmp / "spider" / "overview.csv", index=False)
    _write_json(
        tmp / "cohort.json",
        {
            "generator": "spineseg.synthetic",
            "version": __version__,
            "config": asdict(cfg),
            "train_ids": [i for i in ids if i not in test_ids],
            "test_ids": [i for i in ids if i in test_ids],
        },
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return CohortResult(
        out,
        tuple(i for i in ids if i not in test_ids),
        tuple(i for i in ids if i in test_ids),
        time.perf_counter() - t0,
        size,
    )


def _write_spider(root: Path, n: int, study_id: str, rec: dict) -> list[dict]:
    """SPIDER layout: ``images/<n>_t1.mha``, ``masks/<n>_t1.mha`` (and t2) with SPIDER's label values."""
    rows = []
    for kind, tag in ((SeriesKind.SAGITTAL_T1, "t1"), (SeriesKind.SAGITTAL_T2, "t2")):
        if kind.value not in rec["volumes"]:
            continue
        pixels, affine, labels = rec["volumes"][kind.value]
        mask = mark_partial(labels)
        _write_mha(root / "images" / f"{n}_{tag}.mha", pixels, affine)
        _write_mha(root / "masks" / f"{n}_{tag}.mha", mask, affine)
        values = set(np.unique(mask).tolist())
        sp = np.linalg.norm(affine[:3, :3], axis=0)
        rows.append(
            {
                "new_file_name": f"{n}_{tag}",
                "num_vertebrae": sum(
                    1 for v in values if 0 < v < SYNTHETIC_SACRUM or SPIDER_PARTIAL_OFFSET < v < SPIDER_DISC_OFFSET
                ),
                "num_discs": sum(1 for v in values if v > SPIDER_DISC_OFFSET),
                "subset": "training",
                "PixelSpacing": str([round(float(sp[1]), 6), round(float(sp[0]), 6)]),
                "SliceThickness": round(next(a.thickness_mm for a in rec["acqs"] if a.kind is kind), 3),
                "SpacingBetweenSlices": round(float(sp[2]), 3),
                "SeriesDescription": tag.upper(),
                "synthetic_study_id": study_id,
            }
        )
    return rows
