"""Segmentation + landmark benchmark on the synthetic cohort: disc landmark error (mm) and level accuracy.

What it does (issue #4, benchmark 2), all through spineseg's own APIs:

1. generates two synthetic cohorts with ``generate_cohort`` (``test_fraction=0``, so every study gets its
   SPIDER-layout masks): ``--train-studies`` (40) with ``--seed`` and ``--heldout-studies`` (10) with
   ``--heldout-seed`` (default seed + 1). Each study's generator is seeded from (cohort seed, index), so the
   held-out studies share no anatomy, no noise and no ids with the training ones. Two seeds rather than the
   cohort's own test split, because the generator writes true masks only for its train split and the
   reference line below needs the held-out studies' true masks;
2. converts the training cohort with ``CONVERTERS["synthetic"]`` (→ Dataset505_SyntheticSPIDER: Sagittal T1 and
   T2 of each study, 2 cases per study), plans and preprocesses 2d with the CPU-budget plans;
3. trains ``nnUNetTrainer_CPUBudget`` 2d on all of them (fold ``all``, no final validation) within a
   wall-clock budget (``--budget-min``, default 25; ``epochs`` is only an upper bound, 1000);
4. for each held-out study: ``load_study`` of its DICOM, the Sagittal T2 series' stack,
   ``SegmentationModel.predict_stack`` (CPU, no mirroring), ``landmarks_from_labels`` on the predicted labels;
   and, as the reference line, ``landmarks_from_labels`` on the study's TRUE T2 mask
   (``spider/masks/<n>_t2.mha`` through ``load_label_volume(..., spider=True)``), as tests/test_landmarks.py does.

Compared with the generator's truth (``truth/<study>.json``, ``landmarks_lps_mm[level]["disc_centre"]``), the
comparison of tests/test_landmarks.py:

- **disc landmark error**: for every level found, the distance (mm, LPS) between the landmark's disc centroid
  and the TRUE disc centre of the level it was *named*; median, 90th percentile and max over all found levels
  (a level named one off therefore counts with a ~35 mm error);
- **level accuracy**: the fraction of the 5 × N levels that were found *and* named right, where a found disc is
  named right when the true disc centre nearest to it is that of the level it was given; beside it the counts
  of levels found but named wrong, levels missing, and studies whose level names are ``unsure`` (no sacrum anchor
  or inconsistent evidence);
- also the Dice of the predicted T2 labels against the true mask (mean over the 12 foreground labels present in
  either), and seconds per study for prediction and landmarks.

Run after benchmark 1 (the machine has 2 cores; training uses one torch thread)::

    source .venv/bin/activate
    python benchmarks/bench_seg_synthetic.py [--budget-min 25] [--workdir /tmp/bench_seg_synth] \\
        [--out /tmp/bench_seg_synthetic.json]
    python benchmarks/bench_seg_synthetic.py --eval-only        # score the model already trained in --workdir

Cohorts, nnU-Net folders and the model stay under ``--workdir`` (model:
``WORKDIR/home/nnUNet_results/Dataset505_SyntheticSPIDER/nnUNetTrainer_CPUBudget__nnUNetPlans_CPUBudget__2d``);
cohorts of the same configuration are reused. Markdown tables go to stdout, the results to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the training uses one core; keep numpy/scipy on it too

import numpy as np  # noqa: E402
from bench_seg_common import (  # noqa: E402
    dice,
    log,
    machine,
    md_table,
    refuse_repo_path,
    train_budgeted,
    use_home,
    write_json,
)

DATASET_ID = 505
DATASET_NAME = "Dataset505_SyntheticSPIDER"


def cohort(path: Path, cfg) -> Path:
    """Generate (or reuse, when ``path/cohort.json`` holds the same configuration) a cohort."""
    from spine_seg.synthetic import generate_cohort

    doc = path / "cohort.json"
    if doc.is_file() and json.loads(doc.read_text(encoding="utf-8"))["config"] == asdict(cfg):
        log(f"reusing {path}")
        return path
    t0 = time.perf_counter()
    res = generate_cohort(path, cfg, overwrite=path.exists())
    log(
        f"cohort {path}: {cfg.n_studies} studies in {time.perf_counter() - t0:.0f} s ({res.bytes_written / 1e6:.0f} MB)"
    )
    return path


def level_metrics(ls, truth: dict) -> dict:
    """Per-level comparison of a LandmarkSet with the truth, as tests/test_landmarks.py compares them."""
    from spine_seg.core.constants import LEVELS

    def disc_truth(level: str) -> np.ndarray:
        return np.asarray(truth["landmarks_lps_mm"][level]["disc_centre"], dtype=float)

    levels = {}
    for lm in ls.levels:
        true_level = min(LEVELS, key=lambda lv: float(np.linalg.norm(disc_truth(lv) - lm.disc_xyz)))
        levels[lm.level] = {
            "error_mm": round(float(np.linalg.norm(lm.disc_xyz - disc_truth(lm.level))), 3),
            "nearest_true_level": true_level,
            "right_level": true_level == lm.level,
            "confidence": round(lm.confidence, 3),
        }
    return {
        "levels": levels,
        "missing": list(ls.missing_levels),
        "unsure": bool(ls.unsure),
        "anchor": ls.anchor,
        "n_warnings": len(ls.warnings),
        "warnings": list(ls.warnings),
    }


def summarise(records: list[dict]) -> dict:
    errors = [lv["error_mm"] for r in records for lv in r["levels"].values()]
    right = sum(lv["right_level"] for r in records for lv in r["levels"].values())
    found = sum(len(r["levels"]) for r in records)
    total = 5 * len(records)
    return {
        "studies": len(records),
        "levels_total": total,
        "levels_found": found,
        "levels_right": right,
        "levels_wrong": found - right,
        "levels_missing": sum(len(r["missing"]) for r in records),
        "level_accuracy": right / total if total else None,
        "unsure_studies": sum(r["unsure"] for r in records),
        "error_median_mm": round(float(np.median(errors)), 2) if errors else None,
        "error_p90_mm": round(float(np.percentile(errors, 90)), 2) if errors else None,
        "error_max_mm": round(float(np.max(errors)), 2) if errors else None,
        "error_median_right_levels_mm": round(
            float(
                np.median(
                    [lv["error_mm"] for r in records for lv in r["levels"].values() if lv["right_level"]] or [np.nan]
                )
            ),
            2,
        ),
    }


def aligned(labels: np.ndarray, affine: np.ndarray, ref: np.ndarray, ref_affine: np.ndarray) -> np.ndarray | None:
    """``ref`` on the grid of ``labels`` when the two grids coincide (possibly with the slice order reversed)."""
    if ref.shape != labels.shape:
        return None
    if np.allclose(affine, ref_affine, atol=1e-2):
        return ref
    flipped = ref_affine.copy()
    flipped[:3, 3] = ref_affine[:3, 3] + (ref.shape[0] - 1) * ref_affine[:3, 2]
    flipped[:3, 2] = -ref_affine[:3, 2]
    if np.allclose(affine, flipped, atol=1e-2):
        return ref[::-1]
    return None


def mean_dice(pred: np.ndarray, ref: np.ndarray) -> tuple[float | None, dict[int, float]]:
    per = {}
    for v in sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0}):
        per[int(v)] = round(dice(pred == v, ref == v), 4)
    return (round(float(np.mean(list(per.values()))), 4) if per else None), per


def evaluate(model, heldout: Path) -> dict:
    import pandas as pd

    from spine_seg.core.constants import SeriesKind
    from spine_seg.dicom import load_study
    from spine_seg.landmarks import landmarks_from_labels, load_label_volume

    overview = pd.read_csv(heldout / "spider" / "overview.csv", dtype=str)
    t2_mask = {r.synthetic_study_id: r.new_file_name for r in overview.itertuples() if r.new_file_name.endswith("_t2")}
    ids = json.loads((heldout / "cohort.json").read_text(encoding="utf-8"))["train_ids"]
    pred_recs, true_recs = [], []
    for sid in ids:
        truth = json.loads((heldout / "truth" / f"{sid}.json").read_text(encoding="utf-8"))
        study = load_study(heldout / "train_images" / sid, heldout / "train_series_descriptions.csv")
        (series,) = study.series_of_kind(SeriesKind.SAGITTAL_T2)
        stack = max(series.stacks, key=lambda s: s.n_slices)
        t0 = time.perf_counter()
        lv = model.predict_stack(stack)
        t1 = time.perf_counter()
        ls = landmarks_from_labels(lv.labels, lv.affine)
        t2 = time.perf_counter()
        rec = level_metrics(ls, truth)
        true_labels, true_affine = load_label_volume(heldout / "spider" / "masks" / f"{t2_mask[sid]}.mha", spider=True)
        ref = aligned(lv.labels, lv.affine, true_labels, true_affine)
        dice, per_label = mean_dice(lv.labels, ref) if ref is not None else (None, {})
        seq = next(s["sequence"] for s in truth["series"] if s["kind"] == SeriesKind.SAGITTAL_T2.value)
        rec.update(
            study_id=sid,
            sequence=seq,
            shape_kji=list(stack.shape),
            dice_mean=dice,
            dice_per_label=per_label,
            predict_seconds=round(t1 - t0, 2),
            landmarks_seconds=round(t2 - t1, 2),
        )
        pred_recs.append(rec)
        true_rec = level_metrics(landmarks_from_labels(true_labels, true_affine), truth)
        true_rec.update(study_id=sid, sequence=seq)
        true_recs.append(true_rec)
        errs = [v["error_mm"] for v in rec["levels"].values()]
        log(
            f"  {sid} ({seq}): found {len(rec['levels'])}/5, right "
            f"{sum(v['right_level'] for v in rec['levels'].values())}, "
            f"unsure {rec['unsure']}, median error {np.median(errs) if errs else float('nan'):.1f} mm, Dice {dice}, "
            f"{t1 - t0:.1f} + {t2 - t1:.1f} s"
        )
    return {
        "predicted": summarise(pred_recs),
        "true_masks": summarise(true_recs),
        "mean_dice_t2": round(float(np.mean([r["dice_mean"] for r in pred_recs if r["dice_mean"] is not None])), 4),
        "predict_seconds_per_study": round(float(np.mean([r["predict_seconds"] for r in pred_recs])), 2),
        "landmarks_seconds_per_study": round(float(np.mean([r["landmarks_seconds"] for r in pred_recs])), 2),
        "per_study_predicted": pred_recs,
        "per_study_true_masks": true_recs,
    }


def tables(doc: dict) -> str:
    ev, tr = doc["evaluation"], doc.get("training") or {}
    head = [
        "landmarks from",
        "studies",
        "median error mm",
        "p90 mm",
        "max mm",
        "level accuracy",
        "found",
        "named wrong",
        "missing",
        "unsure studies",
    ]
    rows = []
    for label, key in (("predicted masks (nnU-Net 2d)", "predicted"), ("true masks (reference)", "true_masks")):
        s = ev[key]
        rows.append(
            [
                label,
                s["studies"],
                s["error_median_mm"],
                s["error_p90_mm"],
                s["error_max_mm"],
                f"{s['level_accuracy']:.0%} ({s['levels_right']}/{s['levels_total']})",
                s["levels_found"],
                s["levels_wrong"],
                s["levels_missing"],
                s["unsure_studies"],
            ]
        )
    per = [
        [
            r["study_id"],
            r["sequence"],
            len(r["levels"]),
            sum(v["right_level"] for v in r["levels"].values()),
            ", ".join(r["missing"]) or "—",
            r["unsure"],
            r["anchor"],
            round(float(np.median([v["error_mm"] for v in r["levels"].values()])), 2) if r["levels"] else None,
            r["dice_mean"],
            r["predict_seconds"],
        ]
        for r in ev["per_study_predicted"]
    ]
    out = [
        md_table(head, rows, digits=2),
        md_table(
            [
                "held-out study",
                "T2",
                "found",
                "named right",
                "missing",
                "unsure",
                "anchor",
                "median error mm",
                "Dice (T2, mean)",
                "predict s",
            ],
            per,
            digits=2,
        ),
    ]
    summary = [
        ["mean Dice of the predicted T2 labels (12 labels)", ev["mean_dice_t2"]],
        [
            "seconds per study: predict / landmarks (CPU)",
            f"{ev['predict_seconds_per_study']} / {ev['landmarks_seconds_per_study']}",
        ],
    ]
    if tr:
        summary += [
            ["training cases (fold all)", tr["n_training_cases"]],
            ["time budget (min)", tr["budget_min"]],
            ["trainer / epochs done", f"{tr['trainer']} / {tr['epochs']}"],
            ["seconds per epoch (mean)", tr["seconds_per_epoch"]],
            ["training seconds", tr["seconds"]],
            [
                "last epoch: train loss / pseudo-Dice (EMA)",
                f"{tr['last_train_loss']:.4f} / {tr['last_ema_pseudo_dice']:.3f}",
            ],
            ["patch / batch / spacing (mm)", f"{tr['patch_size']} / {tr['batch_size']} / {tr['spacing_mm']}"],
        ]
    summary.append(["model folder", doc.get("model_folder")])
    out.append(md_table(["", "value"], summary, digits=3))
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/bench_seg_synth"),
        help="cohorts and SPINESEG_HOME (nnU-Net folders, the model) go here",
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_seg_synthetic.json"), help="results JSON")
    ap.add_argument("--train-studies", type=int, default=40)
    ap.add_argument("--heldout-studies", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2024, help="seed of the training cohort")
    ap.add_argument("--heldout-seed", type=int, default=None, help="seed of the held-out cohort (default: seed + 1)")
    ap.add_argument("--budget-min", type=float, default=25.0, help="wall-clock budget of the training epochs, minutes")
    ap.add_argument("--epochs", type=int, default=1000, help="upper bound on the epochs; the budget decides")
    ap.add_argument(
        "--trainer",
        default=None,
        help="nnU-Net trainer (default: nnUNetTrainer_CPUBudget; the demo's "
        "nnUNetTrainerAdam1en3 learns far faster in a short budget)",
    )
    ap.add_argument("--inplane-spacing", type=float, default=None, help="in-plane mm of the CPU plans (default 1.5)")
    ap.add_argument("--eval-only", action="store_true", help="skip training; score the model already in --workdir")
    args = ap.parse_args()
    heldout_seed = args.seed + 1 if args.heldout_seed is None else args.heldout_seed
    if heldout_seed == args.seed:
        raise SystemExit("--heldout-seed must differ from --seed (same seed = same studies)")
    for path, what in ((args.workdir, "--workdir"), (args.out, "--out")):
        refuse_repo_path(path, what)

    env = use_home(args.workdir / "home")  # before anything imports nnunetv2
    from spine_seg.segmentation.predict import NNUNET_AS_IS, SegmentationModel
    from spine_seg.segmentation.train import DEFAULT_TRAINER, plan_and_preprocess
    from spine_seg.synthetic import CohortConfig
    from spine_seg_nnunet_tasks.registry import CONVERTERS

    t_start = time.perf_counter()
    doc: dict = {
        "benchmark": "bench_seg_synthetic",
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    train_cfg = CohortConfig(n_studies=args.train_studies, seed=args.seed, test_fraction=0.0)
    heldout_cfg = CohortConfig(n_studies=args.heldout_studies, seed=heldout_seed, test_fraction=0.0)
    train_cohort = cohort(args.workdir / "cohort_train", train_cfg)
    heldout = cohort(args.workdir / "cohort_heldout", heldout_cfg)
    train_ids = set(json.loads((train_cohort / "cohort.json").read_text())["train_ids"])
    heldout_ids = set(json.loads((heldout / "cohort.json").read_text())["train_ids"])
    if train_ids & heldout_ids:
        raise SystemExit(f"study ids shared by the two cohorts: {sorted(train_ids & heldout_ids)}")
    doc["cohorts"] = {
        "train": {"path": str(train_cohort), "config": asdict(train_cfg), "studies": len(train_ids)},
        "heldout": {"path": str(heldout), "config": asdict(heldout_cfg), "studies": len(heldout_ids)},
    }

    result_folder = env.results / DATASET_NAME / f"{args.trainer or DEFAULT_TRAINER['cpu']}__nnUNetPlans_CPUBudget__2d"
    if not args.eval_only:
        t0 = time.perf_counter()
        raw = CONVERTERS["synthetic"](train_cohort, env.raw, None, overwrite=True)
        n_cases = len(list((raw / "labelsTr").glob("*.nii.gz")))
        log(f"converted {n_cases} cases to {raw} in {time.perf_counter() - t0:.0f} s")
        prepared = plan_and_preprocess(DATASET_ID, ("2d",), "cpu", inplane_spacing_mm=args.inplane_spacing)
        doc["preprocessing"] = prepared.to_dict()
        log(
            f"planned + preprocessed in {prepared.seconds:.0f} s: patch {prepared.patch_size['2d']}, "
            f"batch {prepared.batch_size['2d']}, spacing {prepared.spacing_mm['2d']} mm"
        )

        result, doc["training"] = train_budgeted(DATASET_ID, prepared, env, args.budget_min, args.epochs, args.trainer)
        doc["training"]["n_training_cases"] = n_cases
        result_folder = result.result_folder
    doc["model_folder"] = str(result_folder)

    model = SegmentationModel.from_folder(result_folder, fold="all", device="cpu", **NNUNET_AS_IS)  # as measured
    log(f"segmenting {len(heldout_ids)} held-out studies with {model!r}")
    doc["evaluation"] = evaluate(model, heldout)
    doc["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(args.out, doc)
    print()
    print(tables(doc))
    print(f"\nresults: {args.out}  (wall {doc['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
