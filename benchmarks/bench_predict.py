"""Per-study latency of ``spineseg predict``, stage by stage, and peak memory.

    python benchmarks/bench_predict.py [--bundle runs/demo/bundle] [--study DIR --series-csv F] [--threads 2]
                                       [--device cpu] [--repeats 3] [--out /tmp/bench_predict]

Default study: the real RSNA study 100206310 in ../shared/data (or $SPINESEG_DATA): Sagittal T1 18×512²,
Sagittal T2/STIR 18×462×448, Axial T2 60×320² in 6 blocks: a study of realistic size. Each repeat runs in
a fresh Python process (``--child``) so that its peak RSS (``ru_maxrss``) is that of loading the models and
predicting one study, not of earlier runs; the first repeat also pays the cold file cache. Prints a markdown
table: model loading, then each pipeline stage (ingest, segment, landmarks, measure, project, crop, grade), then
writing (segmentation.nii.gz, report.png, result.json; ``--dicom`` also the SEG and SR), the total, and the peak
RSS. Without ``--bundle``: the shipped base model alone, as ``spineseg predict`` without ``--model`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))
REAL = DATA / "rsna2024" / "train_images" / "100206310"
REAL_CSV = DATA / "rsna2024" / "train_series_descriptions.csv"
ROWS = (
    "load models",
    "ingest",
    "segment",
    "landmarks",
    "measure",
    "project",
    "crop",
    "grade",
    "write outputs",
    "total per study",
)


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    os.environ["nnUNet_def_n_proc"] = str(args.threads)  # the predictor's own thread count on a CPU
    from spine_seg.inference.outputs import write_study_outputs
    from spine_seg.inference.predictor import Predictor

    t0 = time.perf_counter()
    predictor = Predictor(args.bundle or None, device=args.device)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result, study = predictor.predict_with_study(Path(args.study), args.series_csv)
    predict_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    extra = None
    if args.dicom:
        from spine_seg.dicom_out import write_dicom_outputs

        extra = write_dicom_outputs
    write_study_outputs(result, Path(args.out) / Path(args.study).name, study, extra_outputs=extra)
    write_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(
        json.dumps(
            {
                "load models": load_s,
                **dict(result.timings_s),
                "write outputs": write_s,
                "total per study": predict_s + write_s,
                "peak_rss_mb": peak_mb,
                "gpu_peak_mb": gpu_mb,
                "device": str(getattr(predictor.seg_model, "device", args.device)),
                "fallbacks": len(result.fallbacks),
                "levels_found": len(result.landmarks.levels) if result.landmarks else 0,
                "model_rows": sum(s == "model" for s in result.sources.values()),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="model bundle (folder, zip or installed name); none: the base model")
    ap.add_argument("--dicom", action="store_true", help="also write the DICOM SEG and SR, as predict does")
    ap.add_argument("--study", default=str(REAL), help="study folder (default: the real RSNA study)")
    ap.add_argument("--series-csv", default=str(REAL_CSV) if REAL_CSV.is_file() else None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="/tmp/bench_predict")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if not Path(args.study).is_dir():
        sys.exit(f"no study folder {args.study} (set SPINESEG_DATA or pass --study)")
    runs = []
    for _ in range(args.repeats):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--bundle",
            args.bundle,
            "--study",
            args.study,
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--out",
            args.out,
            *(["--dicom"] if args.dicom else []),
        ]
        if args.series_csv:
            cmd += ["--series-csv", args.series_csv]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"child failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"study {args.study}, bundle {args.bundle or '(none: the shipped base model)'}, "
        f"device {runs[0]['device']}, {args.threads} threads, "
        f"{args.repeats} fresh processes; levels found {runs[0]['levels_found']}, model rows "
        f"{runs[0]['model_rows']}/25, "
        f"fallback lines {runs[0]['fallbacks']}"
    )
    print("\n| stage | median s | min s | max s |\n|---|---:|---:|---:|")
    for row in ROWS:
        v = [r.get(row, 0.0) for r in runs]
        print(f"| {row} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} |")
    rss = [r["peak_rss_mb"] for r in runs]
    print(f"| peak RSS (MB) | {statistics.median(rss):.0f} | {min(rss):.0f} | {max(rss):.0f} |")
    if runs[0]["gpu_peak_mb"] is not None:
        print(f"| peak GPU memory (MB) | {statistics.median([r['gpu_peak_mb'] for r in runs]):.0f} | | |")


if __name__ == "__main__":
    main()
