"""Inference speed and memory on the CPU: one study's segmentation + landmarks, stage by stage, with peak RSS.

What it measures (issue #4, benchmark 3): for (a) the real RSNA study in the shared data folder
(``rsna2024/train_images/100206310``; its Sagittal T2/STIR series 1792451510, 18 × 462 × 448 at 0.54 mm, found
through ``train_series_descriptions.csv``) and (b) a held-out synthetic study of benchmark 2, with the 2d model
trained by benchmark 2 (``--model``), each measurement runs in a **fresh Python process** (this script
re-invoked with ``--worker``) so the peak resident memory is that of one study, and reports:

- ``imports``: torch and spineseg's modules, imported in the worker (Python's own start-up not counted);
- ``model load``: ``SegmentationModel.from_folder(..., device="cpu", threads=N)``, nnU-Net's import included
  (imports and model load are paid once per process, not per study);
- ``load DICOM``: ``spine_seg.dicom.load_study`` (header scan of every series of the study) + the Sagittal T2
  stack's pixels (``Stack.load``);
- ``nnU-Net predict``: ``SegmentationModel.predict_array`` on those pixels (no mirroring, as the docs' tables
  were measured; ``predict`` now flips superior–inferior by default, 2× this; CPU, N torch threads);
  ``predict_stack`` is ``Stack.load`` + ``predict_array``, split here to time the two stages apart;
- ``landmarks``: ``landmarks_from_labels`` on the predicted labels;
- ``total``: load DICOM + predict + landmarks (a study's cost once the model is loaded), and the same with
  the imports and the model load (a cold, one-study process);
- ``peak RSS``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the worker at its end (model + one study;
  beside it the same peak read just after the model load, so the difference is what the study adds), and
  the CPU seconds (user + system) of the worker.

Each (study, thread count) is measured ``--repeats`` times (each a fresh process); the tables give medians.
Default: 2 torch threads (``--threads 2``; ``--threads 2 1`` adds a one-thread row). On a 2-core machine
shared with other work, 2 threads are sensitive to whatever else runs: read the rows with that in mind.

Run after benchmark 2 (it needs its model and held-out cohort)::

    source .venv/bin/activate
    python benchmarks/bench_seg_speed.py [--model MODEL_FOLDER] [--threads 2 1] [--repeats 3] \\
        [--out /tmp/bench_seg_speed.json]

Markdown tables go to stdout, the results to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))
REAL_STUDY = DATA / "rsna2024" / "train_images" / "100206310"
REAL_CSV = DATA / "rsna2024" / "train_series_descriptions.csv"
SYNTH_WORKDIR = Path("/tmp/bench_seg_synth")
DEFAULT_MODEL = (
    SYNTH_WORKDIR
    / "home"
    / "nnUNet_results"
    / "Dataset505_SyntheticSPIDER"
    / "nnUNetTrainer_CPUBudget__nnUNetPlans_CPUBudget__2d"
)
STAGES = (
    "imports_s",
    "model_load_s",
    "load_dicom_s",
    "predict_s",
    "landmarks_s",
    "total_s",
    "total_with_model_s",
    "peak_rss_after_model_load_mb",
    "peak_rss_mb",
    "cpu_s",
)


def worker(args: argparse.Namespace) -> None:
    """One study in this (fresh) process; prints one JSON line."""
    t_start = time.perf_counter()
    from spine_seg.segmentation import nnunet_env

    nnunet_env.apply(require=())
    import torch

    from spine_seg.core.constants import SeriesKind
    from spine_seg.dicom import load_study
    from spine_seg.landmarks import landmarks_from_labels
    from spine_seg.segmentation.predict import NNUNET_AS_IS, SegmentationModel

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = SegmentationModel.from_folder(
        args.model, fold=args.fold, device="cpu", threads=args.threads, **NNUNET_AS_IS
    )  # as the docs' tables were measured
    t1 = time.perf_counter()
    rss_model_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    study = load_study(args.worker, args.series_csv)
    (series,) = study.series_of_kind(SeriesKind.SAGITTAL_T2)
    stack = max(series.stacks, key=lambda s: s.n_slices)
    pixels = stack.load()
    t2 = time.perf_counter()
    labels = model.predict_array(pixels, stack.spacing_mm, stack.affine)
    t3 = time.perf_counter()
    ls = landmarks_from_labels(labels, stack.affine)
    t4 = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "study_id": study.study_id,
                "series_id": series.series_id,
                "shape_kji": list(stack.shape),
                "spacing_mm_ijk": [round(v, 4) for v in stack.spacing_mm],
                "threads": args.threads,
                "torch_threads_seen": torch.get_num_threads(),
                "imports_s": round(t0 - t_start, 3),
                "model_load_s": round(t1 - t0, 3),
                "load_dicom_s": round(t2 - t1, 3),
                "predict_s": round(t3 - t2, 3),
                "landmarks_s": round(t4 - t3, 3),
                "total_s": round(t4 - t1, 3),
                "total_with_model_s": round(t4 - t_start, 3),
                "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),  # Linux: kB
                "peak_rss_after_model_load_mb": round(rss_model_mb, 1),
                "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
                "levels_found": list(ls.found_levels),
                "unsure": bool(ls.unsure),
                "labels_present": sorted(int(v) for v in set(labels.ravel().tolist()) - {0}),
            }
        ),
        flush=True,
    )


def run_one(study: Path, csv: Path | None, model: Path, fold: str, threads: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(study),
        "--model",
        str(model),
        "--fold",
        fold,
        "--threads",
        str(threads),
    ]
    if csv is not None:
        cmd += ["--series-csv", str(csv)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({proc.returncode}) on {study}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="nnU-Net result folder (default: benchmark 2's)")
    ap.add_argument("--fold", default="all", help="fold(s) of the model to load (default: all)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="torch threads, one row each (default: 2)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per study and thread count")
    ap.add_argument("--real-study", type=Path, default=REAL_STUDY)
    ap.add_argument("--real-series-csv", type=Path, default=REAL_CSV)
    ap.add_argument(
        "--synthetic-cohort",
        type=Path,
        default=SYNTH_WORKDIR / "cohort_heldout",
        help="benchmark 2's held-out cohort; its first study is measured",
    )
    ap.add_argument("--synthetic-study", default=None, help="study id in --synthetic-cohort (default: the first)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_seg_speed.json"), help="results JSON")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--series-csv", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker is not None:
        args.threads = args.threads[0]
        worker(args)
        return

    from bench_seg_common import machine, md_table, refuse_repo_path, write_json

    refuse_repo_path(args.out, "--out")
    if not (args.model / "plans.json").is_file():
        raise SystemExit(
            f"{args.model}: no nnU-Net model there; run benchmarks/bench_seg_synthetic.py first or pass --model"
        )
    cohort_doc = json.loads((args.synthetic_cohort / "cohort.json").read_text(encoding="utf-8"))
    synth_id = args.synthetic_study or cohort_doc["train_ids"][0]
    synth_split = "train" if synth_id in cohort_doc["train_ids"] else "test"
    studies = [
        ("real RSNA 100206310", args.real_study, args.real_series_csv),
        (
            f"synthetic {synth_id}",
            args.synthetic_cohort / f"{synth_split}_images" / synth_id,
            args.synthetic_cohort / f"{synth_split}_series_descriptions.csv",
        ),
    ]
    doc: dict = {
        "benchmark": "bench_seg_speed",
        "machine": machine(),
        "model": str(args.model),
        "fold": args.fold,
        "load_average_at_start": os.getloadavg(),
        "runs": [],
    }
    t_start = time.perf_counter()
    rows = []
    for label, study, csv in studies:
        for threads in args.threads:
            runs = []
            for r in range(args.repeats):
                rec = run_one(study, csv, args.model, args.fold, threads)
                runs.append(rec)
                print(
                    f"[{time.strftime('%H:%M:%S')}] {label}, {threads} thread(s), run {r + 1}: "
                    f"load {rec['load_dicom_s']:.2f} s, predict {rec['predict_s']:.2f} s, landmarks "
                    f"{rec['landmarks_s']:.2f} s, "
                    f"peak RSS {rec['peak_rss_mb']:.0f} MB, levels {rec['levels_found']}",
                    flush=True,
                )
            med = {k: round(median([x[k] for x in runs]), 3) for k in STAGES}
            doc["runs"].append({"study": label, "path": str(study), "threads": threads, "median": med, "runs": runs})
            shape = "×".join(str(s) for s in runs[0]["shape_kji"])
            rows.append(
                [
                    label,
                    shape,
                    threads,
                    med["imports_s"],
                    med["model_load_s"],
                    med["load_dicom_s"],
                    med["predict_s"],
                    med["landmarks_s"],
                    med["total_s"],
                    med["total_with_model_s"],
                    med["peak_rss_after_model_load_mb"],
                    med["peak_rss_mb"],
                    med["cpu_s"],
                ]
            )
    doc["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    doc["load_average_at_end"] = os.getloadavg()
    write_json(args.out, doc)
    print()
    print(
        md_table(
            [
                "study",
                "T2 stack k×j×i",
                "torch threads",
                "imports s",
                "model load s",
                "load DICOM s",
                "nnU-Net predict s",
                "landmarks s",
                "total s (model loaded)",
                "total s incl. imports + model load",
                "peak RSS after model load MB",
                "peak RSS MB",
                "CPU s",
            ],
            rows,
            digits=2,
        )
    )
    print(f"\nmedians of {args.repeats} fresh processes each; results: {args.out}  (wall {doc['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
