"""Cross-validated training of the grading models, scored each epoch with the official metric.

Per fold: a :class:`~spine_seg.grading.models.GradingModel` (one head per condition group) learns from the
crops of the other folds' studies. The loss is cross-entropy weighted 1/2/4 by the TRUE class, as the
metric weighs rows (Σ w·CE / Σ w), plus an optional any-severe term on the spinal head (per study in the
batch: max P(severe) against "any level severe", weighted like the metric's fourth component). AdamW with
a one-cycle (warm-up + cosine) or plain cosine schedule; fixed seeds; on CUDA automatic mixed precision and
channels_last. Augmentation is light and geometric/intensity only (shift, scale, small rotation,
contrast/brightness), never a mirror: right-sided crops are already mirrored to look like left ones.

After every epoch the fold's held-out studies are predicted and scored with :func:`spine_seg.grading.metric.score`
on a full 25-row submission (locations without a crop, or of groups this model does not grade, get the
training folds' prior); training stops early when that score has not improved for ``patience`` epochs and
the best epoch's weights are kept. Outputs under ``out_dir``:

- ``fold<k>.pt``: weights + config, label maps, crop specs, backbone, weight source, package versions, the
  validation score, the fold's studies and the training prior (see :func:`checkpoint_meta`);
- ``history.csv``: one line per fold and epoch (loss, the four components, score, lr, seconds);
- ``oof.csv`` (submission format, 25 rows per out-of-fold study), ``oof_labels.csv`` (those studies'
  grades in train.csv format: ``spineseg evaluate --pred oof.csv --labels oof_labels.csv`` rescores it),
  ``oof_rows.csv`` (per crop: fold, true label, probabilities);
- ``summary.json``: config, weight source, per-fold and out-of-fold scores.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from spine_seg.core.choices import check_choice
from spine_seg.core.constants import (
    CONDITION_GROUPS,
    CONDITIONS,
    GROUP_OF_CONDITION,
    LEVELS,
    SAMPLE_WEIGHTS,
    SEVERITIES,
    SEVERITY_LABELS,
    TARGET_COLUMNS,
)
from spine_seg.core.errors import UsageError
from spine_seg.core.progress import bars_enabled
from spine_seg.grading import metric
from spine_seg.grading.dataset import CropTable, assign_folds
from spine_seg.grading.ensemble import smoothed_prior, submission_from_rows
from spine_seg.grading.models import (
    DEVICES,
    GradingModel,
    amp_dtype,
    check_backbone,
    check_weights,
    package_versions,
    predict_probs,
    resolve_device,
    save_checkpoint,
)

log = logging.getLogger(__name__)

CLASS_WEIGHTS = torch.tensor([SAMPLE_WEIGHTS[s] for s in SEVERITIES], dtype=torch.float32)
SCHEDULES: tuple[str, ...] = ("onecycle", "cosine")


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in each checkpoint)."""

    backbone: str = "efficientnet_b0"
    groups: tuple[str, ...] = tuple(CONDITION_GROUPS)
    folds: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    schedule: str = "onecycle"
    warmup_frac: float = 0.1
    seed: int = 42
    device: str = "auto"
    amp: bool = True  # CUDA only
    channels_last: bool = True  # CUDA only
    patience: int = 3  # epochs without improvement before stopping; 0 = never stop early
    any_severe_weight: float = 0.0
    weights: str = "auto"  # auto | hub | lite0 | random | a file
    drop_rate: float = 0.2
    augment: bool = True
    shift_frac: float = 0.06
    scale_frac: float = 0.08
    rotate_deg: float = 8.0
    intensity_frac: float = 0.1
    run_folds: tuple[int, ...] | None = None  # train only these folds (default: all)
    eval_batch_size: int = 128
    progress: bool = True

    def validate(self) -> TrainConfig:
        check_backbone(self.backbone)
        self.weights = check_weights(self.weights)
        bad = [g for g in self.groups if g not in CONDITION_GROUPS]
        if bad or not self.groups:
            raise UsageError(f"unknown condition {bad or list(self.groups)}; valid: {[*CONDITION_GROUPS, 'all']}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; valid: {list(SCHEDULES)}")
        check_choice("device", self.device, DEVICES)
        if self.folds < 2:
            raise UsageError(f"folds must be at least 2 (got {self.folds})")
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(f"epochs and batch size must be at least 1 (got {self.epochs}, {self.batch_size})")
        if self.run_folds is not None and any(not 0 <= f < self.folds for f in self.run_folds):
            raise UsageError(f"run_folds {list(self.run_folds)} outside 0..{self.folds - 1}")
        return self


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# ------------------------------------------------------------------------------------------ building blocks


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ w·CE / Σ w with w = 1/2/4 by the true class: the metric's per-group loss on a batch."""
    w = CLASS_WEIGHTS.to(logits.device)[labels]
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return (w * ce).sum() / w.sum().clamp_min(1e-8)


def any_severe_loss(spinal_logits: torch.Tensor, labels: torch.Tensor, study: torch.Tensor) -> torch.Tensor:
    """The metric's any_severe_spinal term over the studies in a batch (spinal rows only).

    Per study: prediction = max P(severe) over its rows in the batch, label = any row severe, weight = the
    largest 1/2/4 weight among its rows; weighted binary log loss.
    """
    if spinal_logits.numel() == 0:
        return spinal_logits.sum() * 0.0
    p = spinal_logits.float().softmax(-1)[:, 2]
    uniq, inv = torch.unique(study, return_inverse=True)
    n = len(uniq)
    pmax = torch.zeros(n, device=p.device).scatter_reduce(0, inv, p, "amax", include_self=False)
    y = torch.zeros(n, device=p.device).scatter_reduce(0, inv, (labels == 2).float(), "amax", include_self=False)
    w = torch.zeros(n, device=p.device).scatter_reduce(
        0, inv, CLASS_WEIGHTS.to(p.device)[labels], "amax", include_self=False
    )
    bce = F.binary_cross_entropy(pmax.clamp(1e-6, 1 - 1e-6), y, reduction="none")
    return (w * bce).sum() / w.sum()


def augment_batch(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Random shift/scale/rotation (one affine per sample, bilinear) and contrast/brightness jitter."""
    b = x.shape[0]

    def u(*shape: int) -> torch.Tensor:  # uniform in [-1, 1], drawn on the CPU generator for reproducibility
        return (torch.rand(*shape, generator=generator) * 2 - 1).to(x.device)

    scale = 1 + cfg.scale_frac * u(b)
    angle = math.radians(cfg.rotate_deg) * u(b)
    shift = 2 * cfg.shift_frac * u(b, 2)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = 1 + cfg.intensity_frac * u(b, 1, 1, 1)
    bright = 0.5 * cfg.intensity_frac * u(b, 1, 1, 1)
    return x * contrast + bright


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if total_steps < 4:  # too short to warm up and anneal
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.lr,
            total_steps=total_steps,
            pct_start=min(max(cfg.warmup_frac, 2.0 / total_steps), 0.5),
            anneal_strategy="cos",
            div_factor=10.0,
            final_div_factor=100.0,
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=cfg.lr / 100)


def _echo_default(line: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(line, file=sys.stderr)


@dataclass
class LoopResult:
    best_state: dict
    best_epoch: int
    best_score: float
    best_details: dict
    history: list[dict] = field(default_factory=list)


def run_loop(
    model: nn.Module,
    n_train: int,
    train_step_loss: Callable[[np.ndarray, bool], torch.Tensor],
    validate: Callable[[], tuple[float, dict]],
    cfg: TrainConfig,
    device: torch.device,
    desc: str,
    echo: Callable[[str], None] = _echo_default,
) -> LoopResult:
    """The epoch loop shared by the crop models and the axial fallback.

    ``train_step_loss(batch_index, augment)`` returns the loss of one batch (forward included);
    ``validate()`` returns (score to minimise, details). Keeps the best epoch's weights; early stopping
    after ``cfg.patience`` epochs without improvement.
    """
    from tqdm import tqdm

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    sched = make_scheduler(opt, cfg, steps_per_epoch * cfg.epochs)
    amp = amp_dtype(device) if cfg.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    rng = np.random.default_rng(cfg.seed)
    best = LoopResult(copy.deepcopy(model.state_dict()), 0, float("inf"), {})
    since_best = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(n_train)
        batches = [order[i : i + cfg.batch_size] for i in range(0, n_train, cfg.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on a batch of one
            batches[-2] = np.concatenate([batches[-2], batches.pop()])
        total, count = 0.0, 0
        bar = tqdm(
            batches,
            desc=f"{desc} epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not bars_enabled(cfg.progress),
            file=sys.stderr,
        )
        for idx in bar:
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = train_step_loss(idx, cfg.augment)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.set_postfix(loss=f"{total / count:.4f}")
        bar.close()
        score, details = validate()
        improved = score < best.best_score - 1e-6
        if improved:
            best = LoopResult(copy.deepcopy(model.state_dict()), epoch, score, details, best.history)
            since_best = 0
        else:
            since_best += 1
        row = {
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            **details,
            "score": score,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        best.history.append(row)
        parts = "  ".join(f"{k} {v:.4f}" for k, v in details.items() if isinstance(v, float))
        echo(
            f"{desc} epoch {epoch}/{cfg.epochs}  loss {row['train_loss']:.4f}  val {score:.4f} ({parts})  "
            f"best {best.best_score:.4f}@{best.best_epoch}{' *' if improved else ''}  {row['seconds']:.0f}s"
        )
        if cfg.patience and since_best >= cfg.patience:
            echo(f"{desc}: no improvement for {cfg.patience} epochs, stopping early")
            break
    return best


# ------------------------------------------------------------------------------------- crop-model training


class CropBatches:
    """Crops of a table kept as float16 in host memory (2,000 studies × 25 × 3×96×96 ≈ 2.8 GB); each batch
    goes to the device as float32."""

    def __init__(self, table: CropTable, groups: Sequence[str], device: torch.device, channels_last: bool):
        self.rows = table.rows.reset_index(drop=True)
        self.x = torch.from_numpy(table.stack(dtype=np.float16)) if len(self.rows) else torch.zeros(0)
        self.group = torch.tensor([groups.index(g) for g in self.rows["group"]], dtype=torch.long)
        self.label = torch.tensor(self.rows["label"].to_numpy(), dtype=torch.long)
        codes, _ = pd.factorize(self.rows["study_id"])
        self.study = torch.tensor(codes, dtype=torch.long)
        self.spinal = groups.index("spinal") if "spinal" in groups else -1
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def inputs(self, idx: np.ndarray) -> torch.Tensor:
        x = self.x[torch.as_tensor(idx)].to(self.device, non_blocking=True).float()
        return x.contiguous(memory_format=self.memory_format)


def crop_loss(
    model: GradingModel, data: CropBatches, idx: np.ndarray, augment: bool, cfg: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    x = data.inputs(idx)
    if augment:
        x = augment_batch(x, cfg, gen)
    logits = model(x)
    g = data.group[idx].to(x.device)
    y = data.label[idx].to(x.device)
    own = logits[torch.arange(len(idx), device=x.device), g]
    loss = weighted_cross_entropy(own, y)
    if cfg.any_severe_weight > 0 and data.spinal >= 0:
        m = g == data.spinal
        loss = loss + cfg.any_severe_weight * any_severe_loss(own[m], y[m], data.study[idx].to(x.device)[m])
    return loss


def rows_frame(rows: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """row_id + the three probabilities, one line per crop row."""
    out = pd.DataFrame(probs, columns=list(SEVERITIES))
    out.insert(0, "row_id", rows["row_id"].to_numpy())
    return out


def score_rows(rows: pd.DataFrame, probs: np.ndarray, labels: pd.DataFrame, prior: pd.DataFrame) -> metric.MetricResult:
    """The official metric of crop-level predictions on these labels' studies (prior where no crop)."""
    studies = list(dict.fromkeys(labels["study_id"]))
    sub, _ = submission_from_rows(studies, rows_frame(rows, probs), prior)
    return metric.score(labels, sub)


def labels_to_train_csv(labels: pd.DataFrame) -> pd.DataFrame:
    """The long label frame back to train.csv's wide layout (blank where ungraded)."""
    wide = pd.DataFrame({"study_id": list(dict.fromkeys(labels["study_id"]))})
    col = labels["condition"] + "_" + labels["level"]
    values = labels["severity"].map(SEVERITY_LABELS)
    piv = pd.DataFrame({"study_id": labels["study_id"], "col": col, "v": values}).pivot(
        index="study_id", columns="col", values="v"
    )
    wide = wide.join(piv, on="study_id")
    for c in TARGET_COLUMNS:
        if c not in wide.columns:
            wide[c] = np.nan
    return wide[["study_id", *TARGET_COLUMNS]]


def label_maps() -> dict:
    return {
        "conditions": list(CONDITIONS),
        "levels": list(LEVELS),
        "severities": list(SEVERITIES),
        "condition_groups": {g: list(c) for g, c in CONDITION_GROUPS.items()},
        "group_of_condition": dict(GROUP_OF_CONDITION),
        "sample_weights": dict(SAMPLE_WEIGHTS),
    }


def checkpoint_meta(
    model: GradingModel,
    cfg: TrainConfig,
    table: CropTable,
    fold: int,
    val: Mapping,
    prior: pd.DataFrame,
    train_studies: Sequence[str],
    val_studies: Sequence[str],
) -> dict:
    """What a checkpoint carries next to its weights, so that it can be used and audited on its own."""
    return {
        "kind": "crop",
        "backbone": model.backbone_name,
        "in_chans": model.in_chans,
        "groups": list(model.groups),
        "config": asdict(cfg),
        "label_maps": label_maps(),
        "crop_specs": {g: asdict(table.specs[g]) for g in model.groups},
        "weight_source": asdict(model.weight_source),
        "versions": package_versions(),
        "val": dict(val),
        "fold": fold,
        "n_folds": cfg.folds,
        "seed": cfg.seed,
        "train_studies": list(train_studies),
        "val_studies": list(val_studies),
        "prior": {
            "index": [list(i) for i in prior.index],
            "columns": list(prior.columns),
            "values": prior.to_numpy().tolist(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def prior_from_meta(meta: Mapping) -> pd.DataFrame:
    p = meta["prior"]
    return pd.DataFrame(
        p["values"],
        index=pd.MultiIndex.from_tuples([tuple(i) for i in p["index"]], names=["condition", "level"]),
        columns=p["columns"],
    )


def init_heads_at_prior(model: GradingModel, labels: pd.DataFrame) -> None:
    """Each head starts at its group's weight-optimal prior (class counts × 1/2/4 over the training labels)."""
    group = labels["condition"].map(GROUP_OF_CONDITION)
    for g in model.groups:
        counts = labels.loc[group == g, "severity"].value_counts()
        weighted = [(counts.get(s, 0) + 0.5) * SAMPLE_WEIGHTS[s] for s in SEVERITIES]
        model.init_head_bias(g, weighted)


@dataclass
class CVResult:
    out_dir: Path
    checkpoints: list[Path]
    fold_scores: dict[int, dict]
    oof_score: dict | None
    oof: pd.DataFrame  # submission format, out-of-fold studies
    oof_rows: pd.DataFrame
    weight_source: str
    seconds: float


def train_cv(
    table: CropTable, cfg: TrainConfig, out_dir: str | Path, echo: Callable[[str], None] = _echo_default
) -> CVResult:
    """K-fold training on ``table`` (rows of ``cfg.groups`` with a grade); writes the files of the module doc.

    Long on purpose: the K-fold loop and its out-of-fold bookkeeping share every fold's results.
    """
    cfg.validate()
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    groups = list(cfg.groups)
    missing_specs = [g for g in groups if g not in table.specs]
    if missing_specs:
        raise UsageError(f"the crop table has no crops for {missing_specs} (it holds {sorted(table.specs)})")
    shapes = {(table.specs[g].n_slices, table.specs[g].size_px) for g in groups}
    if len(shapes) != 1:
        raise UsageError(
            f"one model needs one input shape: the crop specs of {groups} differ in n_slices/size_px {sorted(shapes)}"
        )
    in_chans = shapes.pop()[0]
    table = table.subset(groups=groups)
    graded = table.rows[table.rows.label >= 0]
    if graded.empty:
        raise UsageError(f"no graded crops for {groups}")
    folds = assign_folds(table.labels, cfg.folds, cfg.seed, studies=table.studies)
    amp_on = device.type == "cuda" and cfg.amp
    cl = device.type == "cuda" and cfg.channels_last
    echo(
        f"train {cfg.backbone} on {groups}: {table.summary()}; {cfg.folds} folds, device {device}"
        f"{' (AMP, channels_last)' if amp_on and cl else ''}"
    )

    histories: list[Any] = []
    ckpts, fold_scores, oof_parts, oof_subs = [], {}, [], []
    source = ""
    for k in cfg.run_folds if cfg.run_folds is not None else range(cfg.folds):
        seed_everything(cfg.seed + k)
        val_studies = [s for s in table.studies if folds[s] == k]
        train_studies = [s for s in table.studies if folds[s] != k]
        tr = table.subset(studies=train_studies)
        tr = CropTable(tr.rows[tr.rows.label >= 0].reset_index(drop=True), tr.labels, tr.specs)
        va = table.subset(studies=val_studies)
        prior = smoothed_prior(tr.labels)  # for locations without a crop: never 0 for a class
        model = GradingModel(cfg.backbone, in_chans, groups, cfg.weights, cfg.drop_rate)
        init_heads_at_prior(model, tr.labels)
        model = model.to(device)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        source = str(model.weight_source)
        data = CropBatches(tr, groups, device, cl)
        val_x = torch.from_numpy(va.stack(dtype=np.float16)) if len(va) else torch.zeros(0)
        gen = torch.Generator().manual_seed(cfg.seed + 1000 + k)

        def val_probs(model=model, va=va, val_x=val_x) -> np.ndarray:
            return predict_probs(model, val_x, list(va.rows["group"]), device, cfg.eval_batch_size, cl)

        def validate(va=va, prior=prior, val_probs=val_probs) -> tuple[float, dict]:
            r = score_rows(va.rows, val_probs(), va.labels, prior)
            d = r.to_dict()
            return d.pop("score"), d

        desc = f"{cfg.backbone} fold {k}"
        echo(f"{desc}: {len(train_studies)} train / {len(val_studies)} val studies, {len(tr)} crops; weights {source}")
        res = run_loop(
            model,
            len(tr),
            lambda idx, aug, model=model, data=data, gen=gen: crop_loss(model, data, idx, aug, cfg, gen),  # type: ignore[misc]
            validate,
            cfg,
            device,
            desc,
            echo,
        )
        model.load_state_dict(res.best_state)
        probs = val_probs()
        val = {"score": res.best_score, **res.best_details, "epoch": res.best_epoch}
        fold_scores[k] = val
        path = save_checkpoint(
            out_dir / f"fold{k}.pt",
            model,
            checkpoint_meta(model, cfg, table, k, val, prior, train_studies, val_studies),
        )
        ckpts.append(path)
        part = va.rows[["row_id", "study_id", "condition", "level", "group", "label"]].copy()
        part[list(SEVERITIES)] = probs
        part.insert(1, "fold", k)
        oof_parts.append(part)
        sub_k, _ = submission_from_rows(val_studies, part, prior)  # the fold's training prior where no crop
        oof_subs.append(sub_k)
        histories.extend({"fold": k, **h} for h in res.history)
        echo(f"{desc}: best epoch {res.best_epoch}, val score {res.best_score:.4f} → {path}")
        del data, model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    pd.DataFrame(histories).to_csv(out_dir / "history.csv", index=False)
    oof_rows = pd.concat(oof_parts, ignore_index=True)
    oof_rows.to_csv(out_dir / "oof_rows.csv", index=False)
    oof_studies = list(dict.fromkeys(oof_rows["study_id"]))
    oof_labels = table.labels[table.labels.study_id.isin(oof_studies)].reset_index(drop=True)
    oof = pd.concat(oof_subs, ignore_index=True)
    oof.to_csv(out_dir / "oof.csv", index=False)
    labels_to_train_csv(oof_labels).to_csv(out_dir / "oof_labels.csv", index=False)
    oof_score = metric.score(oof_labels, oof).to_dict() if not oof_labels.empty else None
    result = CVResult(out_dir, ckpts, fold_scores, oof_score, oof, oof_rows, source, time.perf_counter() - t_start)
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "groups": groups,
                "weight_source": source,
                "device": str(device),
                "crop_specs": {g: asdict(table.specs[g]) for g in groups},
                "table": table.summary(),
                "skipped_studies": table.skipped,
                "folds": {str(k): v for k, v in fold_scores.items()},
                "oof": oof_score,
                "checkpoints": [str(p) for p in ckpts],
                "seconds": result.seconds,
                "versions": package_versions(),
            },
            indent=1,
        )
    )
    if oof_score:
        echo(
            f"{cfg.backbone}: out-of-fold score {oof_score['score']:.4f} over {len(oof_studies)} studies "
            f"({'  '.join(f'{k} {v:.4f}' for k, v in oof_score.items() if k != 'score')}) in {result.seconds:.0f}s"
        )
    return result


__all__ = [
    "CLASS_WEIGHTS",
    "CVResult",
    "TrainConfig",
    "any_severe_loss",
    "augment_batch",
    "checkpoint_meta",
    "init_heads_at_prior",
    "labels_to_train_csv",
    "predict_probs",
    "prior_from_meta",
    "resolve_device",
    "run_loop",
    "score_rows",
    "train_cv",
    "weighted_cross_entropy",
]
