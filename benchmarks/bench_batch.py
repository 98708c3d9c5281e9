"""Batch throughput of ``spineseg predict``: the local engine against Ray with 1 and 2 workers, in one run.

    python benchmarks/bench_batch.py --bundle runs/demo/bundle [--studies 12] [--workers 1 2] [--device cpu]
                                     [--address auto] [--no-dicom-out] [--out /tmp/bench_batch]

Writes ``--studies`` synthetic studies (``spine_seg.synthetic``, seed 11) into one input folder, then runs
``predict_batch`` on it once per engine (local, Ray with each ``--workers`` count, local again to bracket a
shared machine's drifting load), each into a fresh output folder, with the CLI's default outputs
(report.png, segmentation.nii.gz, DICOM SEG and SR). Each Ray run starts its own embedded cluster (or joins
``--address``) and stops it, as ``spineseg predict --engine ray`` does, so start-up (cluster, workers loading
the models) is inside its wall time; it is also shown on its own. Prints a markdown table: wall seconds,
start-up seconds (local: loading the models; Ray: starting the cluster and the workers until every worker has
loaded the models), studies per hour over the whole run and after start-up, their ratios to the local engine,
and whether the submission equals the local engine's. Threads: the local engine uses this process's torch
threads (OMP_NUM_THREADS); each Ray worker one CPU and one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_input(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` synthetic studies in ``root/in`` (train and test studies of the cohort together) and their CSV."""
    from spine_seg.synthetic import CohortConfig, generate_cohort

    cohort = root / "cohort"
    if not (cohort / "cohort.json").is_file():
        shutil.rmtree(cohort, ignore_errors=True)
        generate_cohort(cohort, CohortConfig(n_studies=n, seed=11, test_fraction=0.0))
    src = root / "in"
    if not src.is_dir():
        src.mkdir(parents=True)
        for split in ("train_images", "test_images"):
            for study in sorted((cohort / split).glob("*")) if (cohort / split).is_dir() else []:
                shutil.copytree(study, src / study.name)
    csvs = [pd.read_csv(p, dtype=str) for p in sorted(cohort.glob("*_series_descriptions.csv"))]
    csv = root / "series_descriptions.csv"
    pd.concat(csvs).drop_duplicates().to_csv(csv, index=False)
    return src, csv


def run(name: str, src: Path, csv: Path, out: Path, bundle: str, device: str, engine, dicom_out: bool) -> dict:
    from spine_seg.dicom_out import write_dicom_outputs
    from spine_seg.inference.batch import predict_batch

    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = predict_batch(
        src,
        bundle,
        out,
        series_csv=csv,
        device=device,
        engine=engine,
        extra_outputs=write_dicom_outputs if dicom_out else None,
    )
    wall = time.perf_counter() - t0
    n = len(res.outcomes)
    startup = engine.startup_seconds if engine is not None else res.load_seconds
    return {
        "engine": name,
        "studies": n,
        "failed": len(res.failed),
        "wall_s": wall,
        "startup_s": startup,
        "load_avg": (load_before, os.getloadavg()[0]),
        "studies_per_hour": 3600 * n / wall,
        "steady_per_hour": 3600 * n / max(wall - startup, 1e-9),
        "submission": res.submission,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="model bundle (folder, zip or installed name)")
    ap.add_argument("--studies", type=int, default=12)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpus-per-worker", type=float, default=None)
    ap.add_argument("--address", default=None, help="join this Ray cluster instead of starting one")
    ap.add_argument("--no-dicom-out", action="store_true")
    ap.add_argument("--no-second-local", action="store_true", help="skip the local run after the Ray runs")
    ap.add_argument("--out", default="/tmp/bench_batch")
    args = ap.parse_args()

    from spine_seg.inference.engines.ray_engine import RayEngine

    root = Path(args.out)
    src, csv = make_input(root, args.studies)
    dicom = not args.no_dicom_out
    rows = [run("local", src, csv, root / "out_local", args.bundle, args.device, None, dicom)]
    for k in args.workers:
        engine = RayEngine(address=args.address, workers=k, gpus_per_worker=args.gpus_per_worker)
        rows.append(
            run(
                f"ray, {k} worker{'s' if k > 1 else ''}",
                src,
                csv,
                root / f"out_ray{k}",
                args.bundle,
                args.device,
                engine,
                dicom,
            )
        )
    if not args.no_second_local:  # brackets the Ray runs: a shared machine's load drifts
        rows.append(run("local (again)", src, csv, root / "out_local2", args.bundle, args.device, None, dicom))
    local = [r for r in rows if r["engine"].startswith("local")]
    base_all = float(np.mean([r["studies_per_hour"] for r in local]))
    base_steady = float(np.mean([r["steady_per_hour"] for r in local]))
    base = pd.read_csv(rows[0]["submission"])
    print(
        f"\n{rows[0]['studies']} synthetic studies, bundle {args.bundle}, device {args.device}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, DICOM outputs {'on' if dicom else 'off'}; "
        f"× local: against the mean of the local runs\n"
    )
    print(
        "| engine | wall s | start-up s | studies/hour | × local | after start-up: studies/hour | × local | "
        "load avg (start → end) | failed | submission = local |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        sub = pd.read_csv(r["submission"])
        same = list(sub.row_id) == list(base.row_id) and np.allclose(sub.iloc[:, 1:], base.iloc[:, 1:], atol=2e-6)
        print(
            f"| {r['engine']} | {r['wall_s']:.1f} | {r['startup_s']:.1f} | {r['studies_per_hour']:.0f} | "
            f"{r['studies_per_hour'] / base_all:.2f} | {r['steady_per_hour']:.0f} | "
            f"{r['steady_per_hour'] / base_steady:.2f} | {r['load_avg'][0]:.1f} → {r['load_avg'][1]:.1f} | "
            f"{r['failed']} | {'yes' if same else 'NO'} |"
        )
    (root / "bench_batch.json").write_text(
        json.dumps([{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()} for r in rows], indent=1)
    )


if __name__ == "__main__":
    main()
