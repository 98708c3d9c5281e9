"""Segmentation + landmarks per study with the shipped base model on the CPU, by prediction setting.

#10's speed target: segmentation plus landmarks ≤ 10 s per study on 2 CPU cores. ``spineseg predict``
segments with every fold of the base model (two) and the superior–inferior flip; this script does the same
(``SegmentationModel.from_folder(fold=None)``, as ``Bundle.segmentation_model``) on:

- ``rsna``: the real RSNA study 100206310's Sagittal T2/STIR stack (18 × 462 × 448 at 0.54 mm, 3.6 mm slices),
  read from its DICOM files (the read is timed apart);
- ``vb2``: the first real VB2 volume as it is, 76 × 381 × 381 at 1 mm (the issue's "381×381×77" volume):
  ``predict_array`` averages the thin slices into 4 mm slabs (``slab_mm``) unless ``--no-slabs``.

For each setting of ``--precisions`` × ``--tile-steps`` × ``--tile-steps-si`` (the model loaded once per
setting) and each study, ``--repeats`` timed runs after one warm-up; the table gives the median seconds
of ``predict_array`` and ``landmarks_from_label_volume``, their sum, and the levels found on the last run
(the naming of these two volumes with each setting, cross-validated, is ``bench_real_landmarks.py``'s job:
docs/base-model.md).

    python benchmarks/bench_base_speed.py [--precisions float32 bfloat16] [--tile-steps 0.5 0.75] \\
        [--tile-steps-si 0.75 0] [--studies rsna vb2] [--repeats 3] [--threads 1] [--no-slabs] \\
        [--out /tmp/bench_base_speed.json]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_cases import load_rsna, load_vb2  # noqa: E402
from bench_seg_common import log, machine, md_table, refuse_repo_path, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("rsna", "vb2")


def study_volume(name: str, data: Path) -> tuple[str, Any, np.ndarray, tuple[float, float, float]]:
    """(description, affine, pixels [k, j, i], spacing ijk) of one benchmark study."""
    if name == "rsna":
        case = load_rsna(data / "rsna2024")
        t0 = time.perf_counter()
        pixels = case.stack.load()
        log(f"rsna: read {case.stack.shape} from DICOM in {time.perf_counter() - t0:.2f} s")
        return f"RSNA 100206310 Sagittal T2 {case.stack.shape}", case.stack.affine, pixels, case.stack.spacing_mm
    case = next(iter(load_vb2(data / "vb2", 1)))
    spacing = tuple(float(s) for s in np.linalg.norm(case.affine[:3, :3], axis=0))
    return f"{case.case_id} {case.image.shape}", case.affine, case.image, spacing  # type: ignore[return-value]


def time_study(model: Any, repeats: int, affine: Any, pixels: np.ndarray, spacing: Any) -> dict[str, Any]:
    """Median seconds of ``predict_array`` and the landmarks over ``repeats`` runs after a warm-up."""
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.segmentation.predict import LabelVolume

    model.predict_array(pixels, spacing, affine)  # warm-up
    seg_s, lm_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        labels = model.predict_array(pixels, spacing, affine)
        t1 = time.perf_counter()
        ls = landmarks_from_label_volume(LabelVolume(labels, affine, model.label_names))
        seg_s.append(t1 - t0)
        lm_s.append(time.perf_counter() - t1)
    segment, landmarks = round(statistics.median(seg_s), 2), round(statistics.median(lm_s), 2)
    return {
        "precision": model.precision,
        "slab_mm": model.slab_mm,
        "folds": len(model.folds),
        "mirroring": model.mirroring,
        "threads": model.threads,
        "segment_s": segment,
        "landmarks_s": landmarks,
        "total_s": round(segment + landmarks, 2),
        "levels_found": list(ls.found_levels),
    }


def main() -> None:
    from spine_seg.core.choices import Precision, values
    from spine_seg.segmentation.predict import DEFAULT_SLAB_MM

    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, help="nnU-Net result folder (default: the shipped base model)")
    ap.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=values(Precision))
    ap.add_argument("--tile-steps", nargs="+", type=float, default=[0.5], help="across the spine (tile_step_size)")
    ap.add_argument(
        "--tile-steps-si",
        nargs="+",
        type=float,
        default=[0.75, 0.0],
        help="along the patient's S-I axis (tile_step_si); 0: the same as the other (default: %(default)s)",
    )
    ap.add_argument("--studies", nargs="+", default=list(STUDIES), choices=STUDIES)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: predict's, 1 on 2 cores)")
    ap.add_argument("--no-slabs", action="store_true", help="predict thin slices one by one (slab_mm=None)")
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_base_speed.json"))
    args = ap.parse_args()
    refuse_repo_path(args.out, "--out")

    from bench_real_landmarks import DEFAULT_DATA

    from spine_seg.segmentation.base_model import nnunet_folder, require_base_model
    from spine_seg.segmentation.predict import SegmentationModel

    model_dir = args.model or nnunet_folder(require_base_model())
    data = args.data or DEFAULT_DATA
    studies = [study_volume(name, data) for name in args.studies]
    rows: list[dict[str, Any]] = []
    for precision, step, step_si in itertools.product(args.precisions, args.tile_steps, args.tile_steps_si):
        model = SegmentationModel.from_folder(
            model_dir,
            fold=None,
            device="cpu",
            precision=precision,
            tile_step_size=step,
            tile_step_si=step_si or None,
            threads=args.threads,
            slab_mm=None if args.no_slabs else DEFAULT_SLAB_MM,
        )
        for desc, affine, pixels, spacing in studies:
            row = {
                "study": desc,
                "tile_step": step,
                "tile_step_si": step_si or step,
                **time_study(model, args.repeats, affine, pixels, spacing),
            }
            rows.append(row)
            log(f"{desc} {model.precision} steps {step}/{step_si or step}: {row['segment_s']} + {row['landmarks_s']} s")
    header = ["study", "precision", "tile step", "S–I step", "segment s", "landmarks s", "total s", "levels found"]
    table = md_table(
        header,
        [
            [
                r["study"],
                r["precision"],
                r["tile_step"],
                r["tile_step_si"],
                f"{r['segment_s']:.2f}",
                f"{r['landmarks_s']:.2f}",
                f"**{r['total_s']:.2f}**" if r["total_s"] <= 10 else f"{r['total_s']:.2f}",
                len(r["levels_found"]),
            ]
            for r in rows
        ],
    )
    write_json(args.out, {"benchmark": "bench_base_speed", "machine": machine(), "args": vars(args), "rows": rows})
    print(table)
    print(
        f"\nmedians of {args.repeats} runs; all folds ({rows[0]['folds']}), mirroring {rows[0]['mirroring']}, "
        f"{rows[0]['threads']} torch thread(s); results: {args.out}"
    )


if __name__ == "__main__":
    main()
