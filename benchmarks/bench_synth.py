"""Synthetic cohort: studies per second on one core and bytes per study, at the default size.

Targets (issue: synthetic cohort): at least 1 study/s on one core; a 20-study cohort under 100 MB.
CPU time (process_time) is reported beside wall time because it is what one core costs, whatever else
the machine is doing. Run: ``.venv/bin/python benchmarks/bench_synth.py [--studies 20]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

from spine_seg.synthetic import CohortConfig, generate_cohort  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for label, cfg in (
        ("default (RLE, SPIDER layout)", CohortConfig(n_studies=args.studies, seed=args.seed)),
        ("with --preview", CohortConfig(n_studies=min(args.studies, 5), seed=args.seed, preview=True)),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cohort"
            w0, c0 = time.perf_counter(), time.process_time()
            res = generate_cohort(out, cfg)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            n = cfg.n_studies
            rows.append((label, n, wall / n, cpu / n, n / cpu, res.bytes_written / 1e6, res.bytes_written / 1e6 / n))
    print("| configuration | studies | wall s/study | CPU s/study | studies/s (1 core) | MB total | MB/study |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.1f} | {r[6]:.2f} |")


if __name__ == "__main__":
    main()
