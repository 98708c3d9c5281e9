"""``spineseg train-cls``: K-fold training of a grading model on a competition-layout folder.

Logic: :mod:`spine_seg.grading` (dataset, models, train, ensemble, fallback); see docs/grading.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spine_seg.core.choices import Device, check_option, choice_help
from spine_seg.core.constants import CONDITION_GROUPS
from spine_seg.core.progress import bars_enabled
from spine_seg_cli.common import USER_ERRORS, fail

CONDITION_CHOICES: tuple[str, ...] = (*CONDITION_GROUPS, "all")


def _choice(value: str, valid: tuple[str, ...], flag: str) -> str:
    return check_option(flag, value, valid)


def train_cls(
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Competition-layout folder: train.csv, train_label_coordinates.csv, train_images/."
        ),
    ],
    condition: Annotated[
        str,
        typer.Option("--condition", help="spinal, foraminal, subarticular, or all (one model, one head per group)."),
    ] = "all",
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone", help="Any timm model name, e.g. densenet121, efficientnet_b0, tf_efficientnet_lite0."
        ),
    ] = "efficientnet_b0",
    folds: Annotated[
        int, typer.Option("--folds", help="K of the study-grouped, severity-stratified K-fold split (≥ 2).")
    ] = 5,
    epochs: Annotated[
        int, typer.Option("--epochs", help="Maximum epochs per fold (early stopping on the official metric).")
    ] = 10,
    device: Annotated[str, typer.Option("--device", help=choice_help(Device))] = "auto",
    out: Annotated[
        Path, typer.Option("--out", help="Output folder; the run goes to OUT/<backbone>-<condition>/.")
    ] = Path("runs/train-cls"),
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            help="Initial weights: auto, hub, lite0 (tf_efficientnet_lite0, offline), random, or a timm weight FILE.",
        ),
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 1e-3,
    crop_fov: Annotated[
        Optional[float],
        typer.Option("--crop-fov", help="Crop field of view in mm for every group (default: each group's own)."),
    ] = None,
    crop_size: Annotated[
        Optional[int], typer.Option("--crop-size", help="Crop size in pixels (default: the group's, 96).")
    ] = None,
    slices: Annotated[
        Optional[int], typer.Option("--slices", help="Slices per crop = input channels (default: the group's, 3).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds, the initialisation and the batches.")] = 42,
    patience: Annotated[
        int, typer.Option("--patience", help="Stop a fold after this many epochs without improvement (0: never).")
    ] = 3,
    any_severe_weight: Annotated[
        float, typer.Option("--any-severe-weight", help="Weight of the any-severe auxiliary loss on the spinal head.")
    ] = 0.0,
    cache: Annotated[
        Optional[Path], typer.Option("--cache", help="Crop cache folder (default OUT/crop_cache).")
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option("--threads", help="CPU threads for torch (default: torch's choice).")
    ] = None,
    axial_fallback: Annotated[
        bool,
        typer.Option("--axial-fallback", help="Also train the Axial T2 fallback (subarticular, no axial landmarks)."),
    ] = False,
    temperature: Annotated[
        bool,
        typer.Option(
            "--temperature/--no-temperature",
            help="Use the per-group temperatures fitted on the out-of-fold predictions in ensemble.json (always "
            "written to temperature.json; see docs/grading.md: they over-soften a fold average).",
        ),
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Train a grading model (one head per condition group) with K-fold CV; prints each epoch's official metric."""
    # Long on purpose: typer declares the 20 options in the signature (the docstring is the --help
    # text, so the reason is here); the body only checks, calls and prints.
    try:
        import torch

        from spine_seg.grading.crops import DEFAULT_SPECS, CropSpec
        from spine_seg.grading.models import check_backbone, check_weights, resolve_device
        from spine_seg.grading.train import TrainConfig

        _choice(condition, CONDITION_CHOICES, "--condition")
        check_backbone(backbone)
        weights = check_weights(weights)
        _choice(device, ("auto", "cpu", "cuda"), "--device")
        resolve_device(device)
        if not data.is_dir():
            raise FileNotFoundError(f"--data: no such folder: {data}")
        groups = tuple(CONDITION_GROUPS) if condition == "all" else (condition,)
        specs = {
            g: CropSpec(
                fov_mm=crop_fov or DEFAULT_SPECS[g].fov_mm,
                size_px=crop_size or DEFAULT_SPECS[g].size_px,
                n_slices=slices or DEFAULT_SPECS[g].n_slices,
                slice_step=DEFAULT_SPECS[g].slice_step,
            )
            for g in groups
        }
        cfg = TrainConfig(
            backbone=backbone,
            groups=groups,
            folds=folds,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            patience=patience,
            any_severe_weight=any_severe_weight,
            weights=weights,
            progress=progress,
        ).validate()
        if threads:
            torch.set_num_threads(threads)
    except USER_ERRORS as exc:
        raise fail(exc) from exc

    from spine_seg.grading import metric
    from spine_seg.workflows.recipe import train_grading

    run_dir = out / f"{backbone}-{condition}"

    def list_skipped(table) -> None:
        if table.skipped:
            typer.echo(f"{len(table.skipped)} studies skipped:", err=True)
            for sid, why in list(table.skipped.items())[:20]:
                typer.echo(f"  {sid}: {why}", err=True)

    try:
        from tqdm import tqdm

        with tqdm(desc="crops", unit="study", disable=not bars_enabled(progress)) as bar:

            def on_table(table) -> None:
                bar.close()
                list_skipped(table)

            def tick(i: int, n: int, sid: str) -> None:
                bar.total = n
                bar.update(1)

            run = train_grading(
                data,
                cache or out / "crop_cache",
                specs,
                cfg,
                run_dir,
                groups=groups,
                fallback=axial_fallback and "subarticular" in groups,
                temperatures="apply" if temperature else "fit",
                echo=typer.echo,
                crop_progress=tick,
                on_table=on_table,
            )
        table, result, fit = run.table, run.cv, run.temperature_fit
        oof_labels = table.labels[table.labels.study_id.isin(set(result.oof_rows.study_id))]
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    if result.oof_score:
        after = fit.after.get("score")
        typer.echo(
            f"out-of-fold score {result.oof_score['score']:.4f}; per-group temperatures {fit.temperatures}"
            + (f" → {after:.4f}" if after is not None else "")
            + ("" if temperature else " (not applied in ensemble.json; --temperature applies them)")
            + ("" if condition == "all" else f" (groups other than {condition}: the prior)")
        )
        prior = metric.score(
            oof_labels, metric.prior_submission(table.labels, study_ids=list(dict.fromkeys(oof_labels.study_id)))
        )
        typer.echo(f"(prior baseline on the same studies, fitted in-sample: {prior.score:.4f}; lower is better)")
    typer.echo(
        f"wrote {run_dir}/: {', '.join(p.name for p in result.checkpoints)}, oof.csv, oof_labels.csv, "
        "oof_rows.csv, history.csv, summary.json, ensemble.json, temperature.json"
    )
