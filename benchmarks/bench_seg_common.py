"""Shared helpers of the segmentation benchmarks (``bench_seg_*.py``); not a benchmark itself.

- :func:`use_home` points nnU-Net at a benchmark's own ``SPINESEG_HOME`` (under /tmp), ignoring nnU-Net
  path variables set in the caller's shell so a benchmark never writes into someone's real folders;
- :func:`md_table` renders a markdown table; :func:`write_json` writes the results document;
- :func:`log` prints a time-stamped progress line (flushed, so ``nohup … > log`` can be polled);
- :func:`train_budgeted` trains 2d fold ``all`` within a wall-clock budget and returns the training record;
- :func:`dice` of two boolean masks.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spine_seg.segmentation import nnunet_env


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def use_home(home: Path) -> nnunet_env.NnunetEnv:
    """``SPINESEG_HOME=home`` and :func:`nnunet_env.apply` (call before anything imports nnunetv2)."""
    for var in nnunet_env.PATH_VARS:
        if os.environ.pop(var, None) is not None:
            log(f"ignoring {var} from the environment: this benchmark keeps its nnU-Net folders under {home}")
    os.environ[nnunet_env.HOME_VAR] = str(home)
    return nnunet_env.apply()


def train_budgeted(
    dataset_id: int,
    prepared: Any,
    env: nnunet_env.NnunetEnv,
    budget_min: float,
    epochs: int,
    trainer: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train 2d fold ``all`` on the CPU for ``budget_min`` minutes (``epochs`` an upper bound), logging each
    epoch; returns the :class:`TrainResult` and the benchmark's training record (history included)."""
    import numpy as np

    from spine_seg.segmentation.train import train

    log(
        f"training 2d fold all on the CPU, {env.n_proc} torch thread(s), budget {budget_min} min, at most {epochs} "
        "epochs"
    )
    result = train(
        dataset_id,
        "2d",
        "all",
        trainer=trainer,
        device="cpu",
        epochs=epochs,
        progress=lambda r: log(r.line()),
        time_budget_s=budget_min * 60.0,
        validate=False,
    )
    hist = result.history
    record = {
        "budget_min": budget_min,
        "trainer": result.trainer,
        "plans": result.plans,
        "threads": int(env.n_proc),
        "epochs": len(hist),
        "planned_epochs_final": result.epochs,
        "seconds": result.seconds,
        "seconds_per_epoch": round(float(np.mean([h.seconds for h in hist])), 2) if hist else None,
        "last_train_loss": hist[-1].train_loss if hist else float("nan"),
        "last_ema_pseudo_dice": hist[-1].ema_pseudo_dice if hist else float("nan"),
        "patch_size": prepared.patch_size["2d"],
        "batch_size": prepared.batch_size["2d"],
        "spacing_mm": prepared.spacing_mm["2d"],
        "result_folder": str(result.result_folder),
        "history": [
            {
                "epoch": h.epoch,
                "train_loss": round(h.train_loss, 4),
                "val_loss": round(h.val_loss, 4),
                "ema_pseudo_dice": round(h.ema_pseudo_dice, 4),
                "seconds": round(h.seconds, 2),
            }
            for h in hist
        ],
    }
    log(f"trained {len(hist)} epochs in {result.seconds:.0f} s → {result.result_folder}")
    return result, record


def dice(pred: Any, ref: Any) -> float | None:
    """Dice of two boolean masks; None when both are empty (the label is absent from both)."""
    s = int(pred.sum()) + int(ref.sum())
    return None if s == 0 else 2.0 * int((pred & ref).sum()) / s


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": nnunet_env.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "nnUNet_def_n_proc": os.environ.get(nnunet_env.N_PROC_VAR),
        "nnUNet_n_proc_DA": os.environ.get(nnunet_env.N_PROC_DA_VAR),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, doc: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def refuse_repo_path(path: Path, what: str) -> None:
    """Benchmark outputs stay out of the repository (data, models and results are not committed)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        Path(path).resolve().relative_to(repo)
    except ValueError:
        return
    raise SystemExit(f"{what} {path} is inside the repository {repo}; choose a folder outside it (e.g. under /tmp)")
