"""The volumes of ``bench_real_landmarks.py`` and their truth: RSNA 100206310, MyoSegmenTUM, VB2 and a synthetic
held-out cohort, each as a :class:`Case` (see that script's docstring for how truth is defined)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_seg_common import log

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))
DATASETS: tuple[str, ...] = ("rsna", "myosegmentum", "vb2", "synthetic", "spider_t2space", "spider_midsag")
RSNA_STUDY = "100206310"
#: VB2's voxel size. The files store none; /work/shared/data/README.md: isotropic resampling, "about 1 mm:
#: the field of view is about 38 cm" over 381 voxels. The bodies agree: consecutive body centroids lie
#: 31–40 voxels apart, the adult lumbar pitch of ≈ 35–40 mm.
VB2_SPACING_MM = 1.0
#: Vertebra names from cranial to caudal, and the disc between each consecutive pair.
BODY_ORDER: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
SCORED_LEVELS: tuple[str, ...] = ("l1_l2", "l2_l3", "l3_l4", "l4_l5")
SYNTHETIC_SEED = 9000


def disc_name(upper: str, lower: str) -> str:
    return f"{upper.lower()}_{lower.lower()}"


# ---------------------------------------------------------------------------------------------------------
# volumes and their truth


@dataclass
class Case:
    """One volume to score: its image (or how to get it), its geometry and its truth."""

    case_id: str
    dataset: str
    affine: np.ndarray  # (i, j, k, 1) → LPS mm of image and GT
    image: np.ndarray | None = None  # float [k, j, i] for Myo/VB2; None: a DICOM stack (``stack``)
    gt: np.ndarray | None = None  # GT labels [k, j, i], file values (VB2: not anatomical)
    body_names: dict[int, str] = field(default_factory=dict)  # GT value → anatomical name (by order)
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # level → truth point (LPS mm)
    scored: tuple[str, ...] = SCORED_LEVELS
    stack: Any = None  # spine_seg Stack (RSNA, synthetic)
    study: Any = None  # spine_seg Study (RSNA)
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific truth (RSNA foramina, synthetic canal)


def names_by_order(
    gt: np.ndarray, affine: np.ndarray, names: Sequence[str] = BODY_ORDER
) -> tuple[dict[int, str], dict[str, np.ndarray]]:
    """Name each GT label by its centroid's height (LPS +z, superior): the inferior-most takes ``names[-1]``.

    Label numbers are not trusted (VB2's are shuffled per file). Returns (value → name, name → centroid).
    """
    values = sorted(set(np.unique(gt).tolist()) - {0})
    if len(values) > len(names):
        raise ValueError(f"{len(values)} labelled bodies, more than the {len(names)} names {list(names)}")
    cents = {}
    for v in values:
        kk, jj, ii = np.nonzero(gt == v)
        cents[v] = (affine @ np.array([ii.mean(), jj.mean(), kk.mean(), 1.0]))[:3]
    ordered = sorted(values, key=lambda v: -cents[v][2])  # superior first
    chosen = names[len(names) - len(ordered) :]
    value_names = {v: n for v, n in zip(ordered, chosen, strict=True)}
    return value_names, {value_names[v]: cents[v] for v in ordered}


def disc_truth(centroids: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Disc point of each pair of consecutive named bodies: the midpoint of their centroids."""
    present = [n for n in BODY_ORDER if n in centroids]
    out = {}
    for upper, lower in zip(present, present[1:], strict=False):
        if BODY_ORDER.index(lower) == BODY_ORDER.index(upper) + 1:
            out[disc_name(upper, lower)] = 0.5 * (np.asarray(centroids[upper]) + np.asarray(centroids[lower]))
    return out


def _mat_case(
    case_id: str, dataset: str, image: np.ndarray, gt: np.ndarray, spacing_mm: float, names: Sequence[str]
) -> Case:
    from spine_seg_nnunet_tasks.Dataset503_MyoSegmenTUM import affine, to_sagittal_stack

    img_kji, gt_kji = to_sagittal_stack(image).astype(np.float32), to_sagittal_stack(gt)
    aff = affine(img_kji.shape, spacing_mm)
    value_names, cents = names_by_order(gt_kji, aff, names)
    return Case(case_id, dataset, aff, img_kji, gt_kji, value_names, disc_truth(cents))


def load_myosegmentum(folder: Path, limit: int | None = None) -> Iterator[Case]:
    """MyoSegmenTUM volumes as the 503 converter reads them; content duplicates (19 = 18) dropped."""
    import hashlib

    from spine_seg_nnunet_tasks.Dataset503_MyoSegmenTUM import DEFAULT_SPACING_MM, load_mat

    seen: dict[str, str] = {}
    n = 0
    for path in sorted(folder.glob("[0-9][0-9].mat")):
        image, gt = load_mat(path)
        digest = hashlib.sha256(image.tobytes() + gt.tobytes()).hexdigest()
        if digest in seen:
            log(f"myosegmentum: {path.name} is identical to {seen[digest]}: dropped, as the 503 converter drops it")
            continue
        seen[digest] = path.name
        yield _mat_case(f"myo_{path.stem}", "myosegmentum", image, gt, DEFAULT_SPACING_MM, BODY_ORDER[2:])
        n += 1
        if limit is not None and n >= limit:
            return


def load_vb2_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(``I``, ``GT``) of a VB2 file on their common slices: ``I`` may hold one slice fewer along axis 2."""
    import scipy.io

    doc = scipy.io.loadmat(str(path))
    image, gt = np.asarray(doc["I"]), np.asarray(doc["GT"])
    if image.shape[:2] != gt.shape[:2] or abs(image.shape[2] - gt.shape[2]) > 1:
        raise ValueError(f"{path}: I {image.shape} and GT {gt.shape} do not share a grid")
    n = min(image.shape[2], gt.shape[2])
    return image[:, :, :n], gt[:, :, :n]


def load_vb2(folder: Path, limit: int | None = None) -> Iterator[Case]:
    for i, path in enumerate(sorted(folder.glob("[0-9][0-9].mat"))):
        if limit is not None and i >= limit:
            return
        image, gt = load_vb2_mat(path)
        yield _mat_case(f"vb2_{path.stem}", "vb2", image, gt, VB2_SPACING_MM, BODY_ORDER)


def load_rsna(root: Path, study_id: str = RSNA_STUDY) -> Case:
    """The real study: Sagittal T2 stack to segment; spinal keypoints (T2) and foraminal keypoints (T1) in LPS."""
    import pandas as pd

    from spine_seg.core.constants import SeriesKind
    from spine_seg.dicom import load_study

    study = load_study(root / "train_images" / study_id, root / "train_series_descriptions.csv")
    coords = pd.read_csv(root / "train_label_coordinates.fix01b.csv")
    coords = coords[coords.study_id.astype(str) == study_id]
    t2_ids = {s.series_id for s in study.series_of_kind(SeriesKind.SAGITTAL_T2)}
    t1_ids = {s.series_id for s in study.series_of_kind(SeriesKind.SAGITTAL_T1)}
    spinal: dict[str, np.ndarray] = {}
    foramina: dict[tuple[str, str], dict[str, Any]] = {}
    for r in coords.itertuples():
        sid = str(r.series_id)
        if r.condition == "spinal_canal_stenosis" and sid in t2_ids:
            spinal[r.level] = study.get_series(sid).pixel_to_world(int(r.instance_number), float(r.x), float(r.y))
        elif r.condition.endswith("neural_foraminal_narrowing") and sid in t1_ids:
            side = r.condition.split("_")[0]
            foramina[(r.level, side)] = {
                "xyz": study.get_series(sid).pixel_to_world(int(r.instance_number), float(r.x), float(r.y)),
                "instance_number": int(r.instance_number),
            }
    (series,) = study.series_of_kind(SeriesKind.SAGITTAL_T2)[:1]
    stack = max(series.stacks, key=lambda s: s.n_slices)
    from spine_seg.core.constants import LEVELS

    return Case(
        f"rsna_{study_id}",
        "rsna",
        np.asarray(stack.affine),
        truth=spinal,
        scored=tuple(LEVELS),
        stack=stack,
        study=study,
        extra={"foramina": foramina},
    )


#: SPIDER's PNG mask values (spider_t2space/README) → the base scheme's structure names.
SPIDER_PNG_LABELS: dict[int, str] = {29: "disc", 76: "vertebra", 150: "spinal_canal"}
#: Disc names counted up from the lowest (SPIDER labels every disc down to L5/S1 and never the sacrum).
DISCS_FROM_BELOW: tuple[str, ...] = ("l5_s1", "l4_l5", "l3_l4", "l2_l3", "l1_l2", "t12_l1", "t11_t12", "t10_t11")


def slice_affine(row_mm: float, col_mm: float, thickness_mm: float) -> np.ndarray:
    """A sagittal PNG (superior at row 0, anterior at column 0) as a one-slice volume in LPS: i (columns) →
    posterior, j (rows) → inferior, k (the one slice) → left."""
    aff = np.eye(4)
    aff[:3, 0] = [0.0, col_mm, 0.0]
    aff[:3, 1] = [0.0, 0.0, -row_mm]
    aff[:3, 2] = [thickness_mm, 0.0, 0.0]
    return aff


def read_png(path: Path) -> np.ndarray:
    """One 8-bit channel of a PNG (a few SPIDER files are RGBA)."""
    from PIL import Image

    a = np.asarray(Image.open(path))
    return a[..., 0] if a.ndim == 3 else a


def spider_overview(data: Path) -> Any:
    import pandas as pd

    return pd.read_csv(data / "spider" / "overview.csv", dtype=str).set_index("new_file_name")


def spider_geometry(overview: Any, series: str) -> tuple[float, float, float] | None:
    """(row mm, column mm, slice thickness mm) of a SPIDER series from overview.csv, None without a row."""
    import ast

    if series not in overview.index:
        return None
    row = overview.loc[series]
    sp = ast.literal_eval(str(row["PixelSpacing"]))
    thick = float(row["SliceThickness"]) if str(row["SliceThickness"]) not in ("", "nan") else 1.0
    return float(sp[0]), float(sp[1]), thick


def mask_disc_truth(mask_kji: np.ndarray, affine: np.ndarray) -> dict[str, np.ndarray]:
    """The mask's disc components (≥ 20 % of the median of the five largest), named by their order from the
    lowest up (:data:`DISCS_FROM_BELOW`): name → centroid (LPS mm)."""
    from scipy import ndimage

    from spine_seg.core.geometry import voxel_to_world

    disc_value = next(v for v, n in SPIDER_PNG_LABELS.items() if n == "disc")
    cc, n = ndimage.label(mask_kji == disc_value, structure=np.ones((3, 3, 3), bool))
    if not n:
        return {}
    sizes = np.bincount(cc.ravel())[1:]
    big = float(np.median(np.sort(sizes)[::-1][:5]))
    cents = [
        voxel_to_world(affine, np.argwhere(cc == i + 1).mean(axis=0)[::-1]) for i in range(n) if sizes[i] >= 0.2 * big
    ]
    cents.sort(key=lambda c: float(c[2]))  # LPS z: inferior first
    return dict(zip(DISCS_FROM_BELOW, cents, strict=False))


def load_spider_t2space(data: Path, limit: int | None = None) -> Iterator[Case]:
    """SPIDER T2-SPACE slices of patients with back pain (spider_t2space/): each PNG a one-slice volume, its
    mask the truth (discs named from the lowest up), every lumbar level in the mask scored."""
    overview = spider_overview(data)
    root = data / "spider_t2space"
    patients = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    for n, patient in enumerate(patients):
        if limit is not None and n >= limit:
            return
        geo = spider_geometry(overview, f"{patient.name}_t2_SPACE")
        if geo is None:
            log(f"spider_t2space {patient.name}: no overview row (no pixel spacing): skipped")
            continue
        aff = slice_affine(*geo)
        for img_path in sorted((patient / "image").glob("*.png")):
            mask_path = patient / "mask" / img_path.name
            if not mask_path.is_file():
                log(f"spider_t2space {img_path.name}: no mask: skipped")
                continue
            mask = read_png(mask_path)[None]
            truth = mask_disc_truth(mask, aff)
            yield Case(
                f"spider_{img_path.stem}",
                "spider_t2space",
                aff,
                read_png(img_path)[None].astype(np.float32),
                mask,
                truth=truth,
                scored=tuple(lv for lv in DISCS_FROM_BELOW[:5] if lv in truth),
            )


def load_spider_midsag(data: Path, limit: int | None = None) -> Iterator[Case]:
    """One sagittal slice per SPIDER series (spider_midsag/): no masks, so no points; the truth is the series'
    disc count in overview.csv (``extra["num_discs"]``)."""
    overview = spider_overview(data)
    paths = sorted((data / "spider_midsag").glob("*.png"))
    patients = sorted({p.stem.split("_", 1)[0] for p in paths}, key=int)[:limit]
    for path in paths:
        if path.stem.split("_", 1)[0] not in patients:
            continue
        geo = spider_geometry(overview, path.stem)
        if geo is None:
            log(f"spider_midsag {path.stem}: no overview row: skipped")
            continue
        yield Case(
            f"spider_{path.stem}",
            "spider_midsag",
            slice_affine(*geo),
            read_png(path)[None].astype(np.float32),
            scored=(),
            extra={"num_discs": int(overview.loc[path.stem, "num_discs"])},
        )


def synthetic_cohort(workdir: Path, n: int, seed: int) -> Path:
    """Generate (or reuse, same configuration) the held-out synthetic cohort under ``workdir``."""
    from dataclasses import asdict

    from spine_seg.synthetic import CohortConfig, generate_cohort

    cfg = CohortConfig(n_studies=n, seed=seed, test_fraction=0.0)
    path = workdir / f"synthetic_seed{seed}_n{n}"
    doc = path / "cohort.json"
    if doc.is_file() and json.loads(doc.read_text(encoding="utf-8"))["config"] == asdict(cfg):
        return path
    t0 = time.perf_counter()
    generate_cohort(path, cfg, overwrite=path.exists())
    log(f"synthetic cohort {path}: {n} studies (seed {seed}) in {time.perf_counter() - t0:.0f} s")
    return path


def load_synthetic(cohort: Path, limit: int | None = None, need_masks: bool = True) -> Iterator[Case]:
    import pandas as pd

    from spine_seg.core.constants import LEVELS, SeriesKind
    from spine_seg.dicom import load_study
    from spine_seg.landmarks import load_label_volume

    overview = pd.read_csv(cohort / "spider" / "overview.csv", dtype=str)
    t2_mask = {r.synthetic_study_id: r.new_file_name for r in overview.itertuples() if r.new_file_name.endswith("_t2")}
    ids = json.loads((cohort / "cohort.json").read_text(encoding="utf-8"))["train_ids"]
    for i, sid in enumerate(ids):
        if limit is not None and i >= limit:
            return
        truth = json.loads((cohort / "truth" / f"{sid}.json").read_text(encoding="utf-8"))
        lm = truth["landmarks_lps_mm"]
        study = load_study(cohort / "train_images" / sid, cohort / "train_series_descriptions.csv")
        (series,) = study.series_of_kind(SeriesKind.SAGITTAL_T2)[:1]
        stack = max(series.stacks, key=lambda s: s.n_slices)
        labels, affine = load_label_volume(cohort / "spider" / "masks" / f"{t2_mask[sid]}.mha", spider=True)
        yield Case(
            f"synth_{sid}",
            "synthetic",
            affine,
            gt=labels,
            truth={lv: np.asarray(lm[lv]["disc_centre"], float) for lv in LEVELS},
            scored=tuple(LEVELS),
            stack=stack,
            study=study,
            extra={"canal": {lv: np.asarray(lm[lv]["canal_centre"], float) for lv in LEVELS}},
        )
