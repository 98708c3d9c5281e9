"""How the shipped base segmentation model was trained: the base recipe on a GPU machine, in one run.

Runs on a machine with CUDA and nnU-Net but perhaps without SimpleITK (the cases are written and read with
nibabel). Expects the real half of Dataset510_SpineBase already converted into ``$nnUNet_raw`` (the VB2 and
MyoSegmenTUM volumes are not on that machine); adds the synthetic half, then trains, at the same time:

* folds ``all``, ``0`` and ``1`` with the base recipe (the same plans as the CPU build: only the budget differs),
* fold ``0`` with nnU-Net's own default plans and trainer (SGD, full-size network), the comparison that
  docs/segmentation.md reports,

and writes the float16 weights, plans, manifest and the fold-0 validation of both settings to ``OUT``.
Usage: python scripts/train_base_gpu.py OUT BUDGET_MIN N_SYNTHETIC [DEVICE [smoke]]
(``smoke``: nnU-Net's smoke trainer instead of the real ones, to check the run end to end on a CPU first.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORKERS = max(1, min(14, (os.cpu_count() or 3) - 2))


def main() -> None:
    out, budget_min, n_synthetic = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    device = sys.argv[4] if len(sys.argv) > 4 else "cuda"
    smoke = len(sys.argv) > 5 and sys.argv[5] == "smoke"
    base_trainer = "nnUNetTrainer_Smoke" if smoke else "nnUNetTrainerAdam1en3"
    default_trainer = "nnUNetTrainer_Smoke" if smoke else "nnUNetTrainer"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from spine_seg.segmentation import base_model
    from spine_seg.segmentation.nnunet_env import apply
    from spine_seg.segmentation.train import plan_and_preprocess
    from spine_seg_nnunet_tasks.Dataset510_SpineBase import convert_spine_base

    t0 = time.time()
    env = apply()
    convert_spine_base(None, env.raw, 510, n_synthetic=n_synthetic, real=(), workers=WORKERS, add=True)
    print(f"converted in {time.time() - t0:.0f} s", flush=True)
    plan_and_preprocess(
        510,
        ("2d",),
        "cpu",
        inplane_spacing_mm=base_model.BASE_INPLANE_SPACING_MM,
        max_features=base_model.BASE_MAX_FEATURES,
        num_processes=WORKERS,
    )
    plan_and_preprocess(510, ("2d",), "default", num_processes=WORKERS)
    print(f"planned and preprocessed in {time.time() - t0:.0f} s", flush=True)
    # the comparison: nnU-Net's default plans and trainer on fold 0, validated on fold 0's held-out cases
    default = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import logging,sys; logging.basicConfig(level=logging.INFO, format='default: %(message)s');"
                "from spine_seg.segmentation.train import train;"
                f"r = train(510, '2d', 0, '{default_trainer}', '{device}', epochs=None if {smoke} else 1000, "
                f"plans='nnUNetPlans', validate=True, time_budget_s={budget_min * 60});"
                "import json; print('DEFAULT_RESULT', "
                "json.dumps({'epochs': r.epochs, 'final_dice': r.final_dice, 'dice': r.dice_per_label, "
                "'seconds': r.seconds}))"
            ),
        ]
    )
    build = base_model.build_base(
        out / "model",
        None,
        budget_min=budget_min,
        n_synthetic=n_synthetic,
        folds=("all", "0", "1"),
        device=device,
        trainer=base_trainer,
        max_epochs=2 if smoke else 1000,
        workers=WORKERS,
        parallel=True,
        keep_raw=True,
        replan=False,
        validate_cv=True,
    )
    default.wait()
    flat = out / "flat"
    flat.mkdir(parents=True, exist_ok=True)
    for f in ("all", "0", "1"):
        shutil.copy2(out / "model" / "nnunet" / f"fold_{f}" / "checkpoint_final.pth", flat / f"fold_{f}.pth")
    for name in ("plans.json", "dataset.json"):
        shutil.copy2(out / "model" / "nnunet" / name, flat / name)
    shutil.copy2(out / "model" / base_model.MANIFEST_NAME, flat / base_model.MANIFEST_NAME)
    print(json.dumps(build.manifest["folds"], indent=1))
    print(f"total {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
