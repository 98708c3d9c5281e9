"""Measurements and measured grades on real data (issue #24, item 5): the base model's segmentation,
its landmarks and ``spine_seg.measurements`` on every case of the data folder, against real masks,
radiologists' grades, healthy volunteers and the generator's truth.

Datasets (``--datasets``, default all), read from ``--data`` laid out like ``../shared/data`` (so the same
command scores cases kept aside):

- ``spider_t2space``: SPIDER T2-SPACE sagittal slices with disc, vertebra and canal masks. Each slice is
  segmented by the model as a one-slice volume (pixel spacing and slice thickness from
  ``spider/overview.csv``); the mask's own structures (29 disc, 76 vertebra, 150 canal; the unlabelled
  sacrum left out) are measured by the same code with the landmarks found on the mask. Levels are matched
  by position (the predicted and the mask's disc point within 10 mm, whatever their names). Figures: the
  error (predicted − mask) of the canal's AP diameter (label), the CSF's AP diameter and the disc's three
  heights, in mm.
- ``spider_midsag``: one sagittal slice per series (T1, T2, T2-SPACE) of SPIDER patients with back pain,
  graded per disc by radiologists (``spider/radiological_gradings.csv``; ``IVD label`` 1 = L5/S1 counting
  up, checked below on the images: the mean Pfirrmann grade and the measured disc-height index by label).
  Figures: AUC of the disc-height index (lower = narrower) for ``Disc narrowing`` and of the listhesis
  (|slip| %) for ``Spondylolisthesis``, per series kind and with each disc's series averaged.
- ``rsna``: study 100206310, segmented from its DICOM; its five spinal canal grades from ``train.csv``
  against the levels ranked by measured narrowing (Spearman ρ, and whether the severe level is the narrowest).
- ``healthy``: MyoSegmenTUM (19) and VB2 (17) volunteers: the share of measured levels graded Normal/Mild,
  each volume predicted by the fold that held it out (the shipped model's ``real_folds.json``).
- ``synthetic``: ``--synthetic-studies`` generated studies (seed 9000): the measurements on the
  prediction against the same measurements on the generator's true masks.

Run::

    source .venv/bin/activate
    OMP_NUM_THREADS=1 python benchmarks/bench_measurements.py [--data ../shared/data] [--json OUT.json] \\
        [--model FOLDER] [--datasets spider_t2space,spider_midsag,rsna,healthy,synthetic] [--limit N]

Prints the tables; ``--json`` writes every figure and every case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_cases import (  # noqa: E402
    DEFAULT_DATA,
    REPO,
    SPIDER_PNG_LABELS,
    load_myosegmentum,
    load_rsna,
    load_vb2,
    read_png,
    slice_affine,
    spider_geometry,
)
from bench_seg_common import fmt, log, machine, md_table, write_json  # noqa: E402

DATASETS = ("spider_t2space", "spider_midsag", "rsna", "healthy", "synthetic")
BASE_NAMES = {0: "background", 1: "vertebra", 2: "sacrum", 3: "disc", 4: "spinal_canal"}
#: A predicted and a mask disc point closer than this are the same level.
MATCH_MM = 10.0
#: SPIDER's "IVD label" of each level (1 = L5/S1 counting up).
IVD_OF_LEVEL = {"l5_s1": 1, "l4_l5": 2, "l3_l4": 3, "l2_l3": 4, "l1_l2": 5}
COMPARED = ("canal_ap_mm", "csf_ap_mm", "disc_height_anterior_mm", "disc_height_middle_mm", "disc_height_posterior_mm")


@dataclass
class Slice2D:
    """One PNG slice as a one-slice volume: pixels [1, rows, cols], LPS affine, optional mask classes."""

    case_id: str
    image: np.ndarray
    affine: np.ndarray
    mask: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------------------
# model and measurement


class Model:
    """The segmentation model (shipped by default), each fold loaded once; volumes named in ``folds`` are
    predicted by the fold that held them out."""

    def __init__(self, folder: Path | None, device: str, cache: Path | None = None):
        from spine_seg.segmentation.base_model import model_folds, nnunet_folder, require_base_model

        base = require_base_model(folder)
        self.folds = [int(f) if f.isdigit() else f for f in model_folds(base)]
        self.folder = nnunet_folder(base)
        folds_file = base / "real_folds.json"
        self.held_out: dict[str, int] = json.loads(folds_file.read_text()) if folds_file.is_file() else {}
        self.device = device
        self.cache = cache
        self._models: dict[str, Any] = {}

    def get(self, case_id: str) -> Any:
        from spine_seg.segmentation.predict import SegmentationModel

        fold = self.held_out.get(case_id)
        key = "all" if fold is None else str(fold)
        if key not in self._models:
            folds = self.folds if fold is None else [fold]
            self._models[key] = SegmentationModel.from_folder(self.folder, fold=folds, device=self.device)
        return self._models[key]

    def predict(self, case_id: str, image_kji: np.ndarray, affine: np.ndarray) -> Any:
        from spine_seg.segmentation.predict import LabelVolume

        m = self.get(case_id)
        path = None
        if self.cache is not None:
            import hashlib

            key = f"{self.folder.resolve()}|{self.held_out.get(case_id, 'all')}|{case_id}"
            path = self.cache / f"{case_id}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
            if path.is_file():
                with np.load(path) as z:
                    return LabelVolume(z["labels"], affine, m.label_names)
        spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
        labels = m.predict_array(image_kji.astype(np.float32), spacing, affine)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, labels=labels)
        return LabelVolume(labels, affine, m.label_names)


def measure(label_volume: Any, image: np.ndarray | None) -> tuple[Any, Any, float]:
    """(landmarks, measurements, seconds of the measurement alone)."""
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.measurements import measure_spine

    ls = landmarks_from_label_volume(label_volume)
    t0 = time.perf_counter()
    ms = measure_spine(label_volume, ls, image)
    return ls, ms, time.perf_counter() - t0


def mask_volume(mask: np.ndarray, affine: np.ndarray) -> Any:
    from spine_seg.segmentation.predict import LabelVolume

    out = np.zeros(mask.shape, np.uint8)
    for value, name in SPIDER_PNG_LABELS.items():
        out[mask == value] = {v: k for k, v in BASE_NAMES.items()}[name]
    return LabelVolume(out, affine, BASE_NAMES)


def _match(pred_ls: Any, ref_ls: Any) -> dict[str, str]:
    """Predicted level name → mask level name, by disc point within MATCH_MM (names may differ)."""
    out = {}
    for lm in pred_ls.levels:
        d = [(float(np.linalg.norm(lm.disc_xyz - r.disc_xyz)), r.level) for r in ref_ls.levels]
        if d and min(d)[0] <= MATCH_MM:
            out[lm.level] = min(d)[1]
    return out


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Mann-Whitney AUC (ties count half); None without both classes."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _stats(errors: Sequence[float]) -> dict[str, Any]:
    e = np.abs(np.asarray(errors, float))
    if not len(e):
        return {"n": 0, "median_abs_mm": None, "p90_abs_mm": None, "bias_mm": None}
    return {
        "n": len(e),
        "median_abs_mm": round(float(np.median(e)), 3),
        "p90_abs_mm": round(float(np.percentile(e, 90)), 3),
        "bias_mm": round(float(np.mean(errors)), 3),
    }


# ---------------------------------------------------------------------------------------------------------
# datasets


def spider_t2space_cases(data: Path, overview: Any, limit: int | None) -> Iterator[Slice2D]:
    root = data / "spider_t2space"
    n = 0
    for patient in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name)):
        geo = spider_geometry(overview, f"{patient.name}_t2_SPACE")
        if geo is None:
            log(f"spider_t2space: {patient.name}: no overview row: skipped")
            continue
        for img_path in sorted((patient / "image").glob("*.png")):
            mask_path = patient / "mask" / img_path.name
            if not mask_path.is_file():
                log(f"spider_t2space: {img_path.name}: no mask: skipped")
                continue
            aff = slice_affine(*geo)
            yield Slice2D(img_path.stem, read_png(img_path)[None], aff, read_png(mask_path)[None])
        n += 1
        if limit is not None and n >= limit:
            return


def run_spider_t2space(data: Path, model: Model, overview: Any, limit: int | None) -> dict[str, Any]:
    records, errors = [], {k: [] for k in COMPARED}
    for case in spider_t2space_cases(data, overview, limit):
        img = case.image.astype(np.float32)
        pred = model.predict(case.case_id, img, case.affine)
        pls, pms, secs = measure(pred, img)
        assert case.mask is not None
        rls, rms, _ = measure(mask_volume(case.mask, case.affine), img)
        pairs = _match(pls, rls)
        rec: dict[str, Any] = {"case": case.case_id, "levels": {}, "measure_seconds": round(secs, 3)}
        for plv, rlv in pairs.items():
            p, r = pms.level(plv), rms.level(rlv)
            if p is None or r is None:
                continue
            row = {}
            for k in COMPARED:
                pv, rv = p.value(k), r.value(k)
                row[k] = {"pred": pv, "mask": rv}
                if pv is not None and rv is not None:
                    errors[k].append(pv - rv)
            rec["levels"][f"{plv}~{rlv}"] = row
        records.append(rec)
        log(f"spider_t2space {case.case_id}: {len(pairs)} levels matched of {len(rls.levels)} on the mask")
    return {"cases": records, "errors": {k: _stats(v) for k, v in errors.items()}}


def run_spider_midsag(
    data: Path, model: Model, overview: Any, limit: int | None, kinds: Sequence[str] = ("t1", "t2", "t2_SPACE")
) -> dict[str, Any]:
    import pandas as pd

    from spine_seg.measurements.grades import measured_grades

    grades = pd.read_csv(data / "spider" / "radiological_gradings.csv")
    grades.columns = [c.strip() for c in grades.columns]
    by_key = {(int(r["Patient"]), int(r["IVD label"])): r for _, r in grades.iterrows()}
    rows, skipped = [], []
    paths = sorted((data / "spider_midsag").glob("*.png"))
    patients = sorted({p.stem.split("_", 1)[0] for p in paths}, key=int)
    if limit is not None:
        patients = patients[:limit]
    for path in paths:
        pid, kind = path.stem.split("_", 1)
        if pid not in patients or kind not in kinds:
            continue
        geo = spider_geometry(overview, path.stem)
        if geo is None:
            skipped.append({"case": path.stem, "reason": "no overview row (no pixel spacing)"})
            continue
        img = read_png(path)[None].astype(np.float32)
        if min(img.shape[1:]) < 128:
            skipped.append({"case": path.stem, "reason": f"image too small {img.shape[1:]}"})
            continue
        pred = model.predict(path.stem, img, slice_affine(*geo))
        ls, ms, _ = measure(pred, img)
        if not ls.levels:
            skipped.append({"case": path.stem, "reason": "no disc found"})
            continue
        listh = {g.site: g for g in measured_grades(ms) if g.finding == "listhesis"}
        for site in ms.levels:
            key = (int(pid), IVD_OF_LEVEL[site.site])
            if key not in by_key:
                skipped.append({"case": f"{path.stem} {site.site}", "reason": "no radiological grade for this disc"})
                continue
            g = by_key[key]
            pct = site.value("listhesis_percent")
            rows.append(
                {
                    "patient": int(pid),
                    "series": kind,
                    "level": site.site,
                    "ivd": key[1],
                    "confidence": ls.get(site.site).confidence if ls.get(site.site) else None,
                    "dhi": site.value("disc_height_index"),
                    "disc_middle_mm": site.value("disc_height_middle_mm"),
                    "signal": site.value("disc_csf_signal_ratio"),
                    "listhesis_pct": pct,
                    "listhesis_mm": site.value("listhesis_mm"),
                    "p_listhesis": None if not listh[site.site].valid else 1 - listh[site.site].probabilities[0],  # type: ignore[index]
                    "narrowing": int(g["Disc narrowing"]),
                    "spondylolisthesis": int(g["Spondylolisthesis"]),
                    "pfirrmann": int(g["Pfirrman grade"]),
                }
            )
        log(f"spider_midsag {path.stem}: {len(ms.levels)} levels")
    frame = pd.DataFrame(rows)
    return {"rows": rows, "skipped": skipped, "summary": midsag_summary(frame)}


def midsag_summary(frame: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if frame.empty:
        return out

    def aucs(f: Any) -> dict[str, Any]:
        n = f.dropna(subset=["dhi"])
        li = f.dropna(subset=["listhesis_pct"])
        return {
            "narrowing_auc_dhi": _round(auc(-n["dhi"], n["narrowing"])),
            "narrowing_n": [int(n["narrowing"].sum()), len(n)],
            "listhesis_auc_abs_pct": _round(auc(li["listhesis_pct"].abs(), li["spondylolisthesis"])),
            "listhesis_n": [int(li["spondylolisthesis"].sum()), len(li)],
        }

    for kind in sorted(frame["series"].unique()):
        out[kind] = aucs(frame[frame["series"] == kind])
    per_disc = frame.groupby(["patient", "ivd"]).agg(
        dhi=("dhi", "mean"),
        listhesis_pct=("listhesis_pct", lambda s: s.abs().mean()),
        narrowing=("narrowing", "first"),
        spondylolisthesis=("spondylolisthesis", "first"),
    )
    out["per_disc_series_averaged"] = aucs(per_disc.reset_index())
    out["ivd_check"] = {
        int(i): {"mean_pfirrmann": _round(float(g["pfirrmann"].mean())), "mean_dhi": _round(float(g["dhi"].mean()))}
        for i, g in frame.groupby("ivd")
    }
    return out


def _round(v: float | None, d: int = 3) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), d)


def run_rsna(data: Path, model: Model) -> dict[str, Any]:
    import pandas as pd

    from spine_seg.core.constants import LEVELS, SEVERITIES
    from spine_seg.measurements.grades import measured_grades

    case = load_rsna(data / "rsna2024")
    t0 = time.perf_counter()
    lv = model.get(case.case_id).predict_stack(case.stack)
    seg_s = time.perf_counter() - t0
    image = case.stack.load()
    ls, ms, secs = measure(lv, image)
    truth = pd.read_csv(data / "rsna2024" / "train.csv", dtype=str).set_index("study_id").loc[case.study.study_id]
    canal = {g.site: g for g in measured_grades(ms) if g.finding == "spinal_canal_stenosis"}
    rows = []
    for level in LEVELS:
        site = ms.level(level)
        g = canal.get(level)
        rows.append(
            {
                "level": level,
                "truth": truth.get(f"spinal_canal_stenosis_{level}"),
                "csf_fraction": site.value("csf_fraction") if site else None,
                "csf_ap_mm": site.value("csf_ap_mm") if site else None,
                "canal_ap_mm": site.value("canal_ap_mm") if site else None,
                "canal_ap_ratio": site.value("canal_ap_ratio") if site else None,
                "measured_grade": g.grade if g else None,
                "probabilities": None if g is None or g.probabilities is None else list(g.probabilities),
            }
        )
    order = {"Normal/Mild": 0, "Moderate": 1, "Severe": 2}
    ok = [r for r in rows if r["csf_fraction"] is not None and r["truth"] in order]
    rho = None
    if len(ok) >= 3:
        a = pd.Series([-r["csf_fraction"] for r in ok]).rank()
        b = pd.Series([order[r["truth"]] for r in ok]).rank()
        rho = _round(float(a.corr(b)))
    narrowest = min(ok, key=lambda r: r["csf_fraction"])["level"] if ok else None
    worst = max(ok, key=lambda r: order[r["truth"]])["level"] if ok else None
    right = sum(
        1 for r in ok if r["measured_grade"] is not None and SEVERITIES.index(r["measured_grade"]) == order[r["truth"]]
    )
    return {
        "levels": rows,
        "spearman_rho": rho,
        "narrowest_level": narrowest,
        "most_severe_level": worst,
        "grades_right": [right, len(ok)],
        "segment_seconds": round(seg_s, 2),
        "measure_seconds": round(secs, 3),
        "landmarks": [lm.level for lm in ls.levels],
    }


def run_healthy(data: Path, model: Model, limit: int | None) -> dict[str, Any]:
    from spine_seg.measurements.grades import measured_grades

    per: dict[str, dict[str, Any]] = {}
    cases = []
    for loader, folder in ((load_myosegmentum, "myosegmentum"), (load_vb2, "vb2")):
        counts = {"normal_mild": 0, "moderate": 0, "severe": 0, "invalid": 0, "narrowing": 0, "listhesis": 0, "n": 0}
        for case in loader(data / folder, limit):
            lv = model.predict(case.case_id, case.image, case.affine)
            _, ms, secs = measure(lv, case.image)
            rec = {"case": case.case_id, "measure_seconds": round(secs, 3), "levels": {}}
            for g in measured_grades(ms):
                rec["levels"].setdefault(g.site, {})[g.finding] = g.grade
                if g.finding == "spinal_canal_stenosis":
                    counts["n"] += 1
                    counts[g.grade or "invalid"] += 1
                elif g.finding == "disc_narrowing" and g.grade == "present":
                    counts["narrowing"] += 1
                elif g.finding == "listhesis" and g.grade not in (None, "none"):
                    counts["listhesis"] += 1
            cases.append(rec)
            log(f"healthy {case.case_id}: {rec['levels']}")
        graded = counts["n"] - counts["invalid"]
        counts["share_normal_mild"] = _round(counts["normal_mild"] / graded) if graded else None
        per[folder] = counts
    return {"datasets": per, "cases": cases}


def run_synthetic(model: Model, n: int, workdir: Path) -> dict[str, Any]:
    from bench_real_cases import SYNTHETIC_SEED, load_synthetic, synthetic_cohort

    from spine_seg.segmentation.predict import LabelVolume

    errors: dict[str, list[float]] = {k: [] for k in ("canal_ap_mm", *COMPARED[2:])}
    for case in load_synthetic(synthetic_cohort(workdir, n, SYNTHETIC_SEED)):
        image = case.stack.load()
        pred = model.get(case.case_id).predict_stack(case.stack)
        pls, pms, _ = measure(pred, image)
        from spine_seg.core.labels import SEG_LABELS

        truth = LabelVolume(case.gt, case.affine, {v: k for k, v in SEG_LABELS.items()})
        tls, tms, _ = measure(truth, image)
        for plv, tlv in _match(pls, tls).items():
            p, t = pms.level(plv), tms.level(tlv)
            for k in errors:
                pv, tv = (p.value(k) if p else None), (t.value(k) if t else None)
                if pv is not None and tv is not None:
                    errors[k].append(pv - tv)
        log(f"synthetic {case.case_id}: {len(pls.levels)} levels")
    return {"errors": {k: _stats(v) for k, v in errors.items()}, "studies": n}


# ---------------------------------------------------------------------------------------------------------


def error_table(title: str, errors: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [[k, v["n"], v["median_abs_mm"], v["p90_abs_mm"], v["bias_mm"]] for k, v in errors.items()]
    return title + "\n" + md_table(["measurement", "n", "median |error| mm", "p90 |error| mm", "bias mm"], rows)


def tables(doc: Mapping[str, Any]) -> str:
    out = []
    if "spider_t2space" in doc:
        title = "SPIDER T2-SPACE slices: predicted segmentation vs the mask (same code, each its own landmarks)"
        out.append(error_table(title, doc["spider_t2space"]["errors"]))
    if "spider_midsag" in doc:
        s = doc["spider_midsag"]["summary"]
        out.append("\nSPIDER mid-sagittal slices against the radiologists' grades (AUC)")
        rows = []
        for k, v in s.items():
            if k == "ivd_check":
                continue
            rows.append(
                [
                    k,
                    v["narrowing_auc_dhi"],
                    f"{v['narrowing_n'][0]}/{v['narrowing_n'][1]}",
                    v["listhesis_auc_abs_pct"],
                    f"{v['listhesis_n'][0]}/{v['listhesis_n'][1]}",
                ]
            )
        out.append(
            md_table(["series", "narrowing AUC (DHI)", "narrowed/n", "listhesis AUC (|slip|)", "slipped/n"], rows)
        )
        out.append("IVD label check (1 = L5/S1): " + json.dumps(s.get("ivd_check", {})))
    if "rsna" in doc:
        r = doc["rsna"]
        out.append("\nRSNA 100206310: spinal canal")
        out.append(
            md_table(
                ["level", "truth", "CSF fraction", "CSF AP mm", "canal AP mm", "measured grade"],
                [
                    [x["level"], x["truth"], x["csf_fraction"], x["csf_ap_mm"], x["canal_ap_mm"], x["measured_grade"]]
                    for x in r["levels"]
                ],
            )
        )
        out.append(
            f"Spearman ρ {fmt(r['spearman_rho'])}; narrowest {r['narrowest_level']}, "
            f"most severe {r['most_severe_level']}; "
            f"grades right {r['grades_right'][0]}/{r['grades_right'][1]}"
        )
    if "healthy" in doc:
        out.append("\nHealthy volunteers: measured spinal canal grades")
        out.append(
            md_table(
                [
                    "dataset",
                    "levels",
                    "normal/mild",
                    "moderate",
                    "severe",
                    "invalid",
                    "share normal/mild",
                    "narrowing",
                    "listhesis",
                ],
                [
                    [
                        k,
                        v["n"],
                        v["normal_mild"],
                        v["moderate"],
                        v["severe"],
                        v["invalid"],
                        v["share_normal_mild"],
                        v["narrowing"],
                        v["listhesis"],
                    ]
                    for k, v in doc["healthy"]["datasets"].items()
                ],
            )
        )
    if "synthetic" in doc:
        out.append(error_table("\nSynthetic: prediction vs the generator's true masks", doc["synthetic"]["errors"]))
    if "measure_seconds" in doc:
        out.append(
            f"\nMeasurement time per volume: median {doc['measure_seconds']['median']} s, "
            f"max {doc['measure_seconds']['max']} s"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", type=Path, default=None, help="write every figure and case here")
    ap.add_argument("--model", type=Path, default=None, help="a base model folder (default: the shipped one)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--limit", type=int, default=None, help="at most N patients / volumes per dataset")
    ap.add_argument("--synthetic-studies", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--midsag-series", default="t1,t2,t2_SPACE", help="which SPIDER series kinds to score")
    ap.add_argument("--cache", type=Path, default=None, help="keep predicted label volumes here and reuse them")
    args = ap.parse_args(argv)
    wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(wanted) - set(DATASETS))
    if unknown:
        raise SystemExit(f"unknown datasets {unknown}; valid: {list(DATASETS)}")
    if not args.data.is_dir():
        raise SystemExit(f"--data {args.data}: no such folder (lay it out like ../shared/data)")
    model = Model(args.model, args.device, args.cache)
    overview = pd.read_csv(args.data / "spider" / "overview.csv", dtype=str).set_index("new_file_name")
    doc: dict[str, Any] = {"machine": machine(), "model": str(model.folder), "data": str(args.data)}
    t0 = time.perf_counter()
    if "spider_t2space" in wanted:
        doc["spider_t2space"] = run_spider_t2space(args.data, model, overview, args.limit)
    if "spider_midsag" in wanted:
        kinds = tuple(k.strip() for k in args.midsag_series.split(",") if k.strip())
        doc["spider_midsag"] = run_spider_midsag(args.data, model, overview, args.limit, kinds)
    if "rsna" in wanted:
        doc["rsna"] = run_rsna(args.data, model)
    if "healthy" in wanted:
        doc["healthy"] = run_healthy(args.data, model, args.limit)
    if "synthetic" in wanted:
        doc["synthetic"] = run_synthetic(model, args.synthetic_studies, REPO / "runs" / "bench_measurements")
    secs = [c["measure_seconds"] for k in ("spider_t2space", "healthy") if k in doc for c in doc[k]["cases"]]
    if "rsna" in doc:
        secs.append(doc["rsna"]["measure_seconds"])
    if secs:
        doc["measure_seconds"] = {"median": round(float(np.median(secs)), 3), "max": round(float(np.max(secs)), 3)}
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    print(tables(doc))
    if args.json is not None:
        write_json(args.json, doc)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
