"""``spineseg prepare`` and ``spineseg train-seg``: nnU-Net datasets and training.

Logic: :mod:`spine_seg_nnunet_tasks.registry` (converters), :mod:`spine_seg.segmentation.train` (planning,
preprocessing, training) and :mod:`spine_seg.segmentation.nnunet_env` (where nnU-Net keeps its files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from spine_seg.core.choices import Device, check_choice, choice_help
from spine_seg.core.errors import UsageError
from spine_seg.segmentation import nnunet_env
from spine_seg.segmentation import train as seg_train
from spine_seg_cli.common import USER_ERRORS, fail

SEG_ERRORS = (*USER_ERRORS, nnunet_env.NnunetEnvError)


def _converters() -> dict:
    from spine_seg_nnunet_tasks.registry import CONVERTERS  # imports SimpleITK etc.: only when converting

    return CONVERTERS


def prepare(
    source: Annotated[
        str, typer.Option("--source", help="Dataset kind: spider, rsna, rsna-foraminal, myosegmentum or synthetic.")
    ],
    input_dir: Annotated[
        Path, typer.Option("--input", help="The dataset's folder as downloaded (or `spineseg synth --out`).")
    ],
    dataset_id: Annotated[
        Optional[int], typer.Option("--dataset-id", help="nnU-Net dataset id (5xx); default: the source's own.")
    ] = None,
    config: Annotated[
        Optional[list[str]],
        typer.Option("--config", help="Configuration to preprocess (repeatable): 2d, 3d_fullres, 3d_lowres."),
    ] = None,
    budget: Annotated[
        str,
        typer.Option(
            "--budget", help="Plans: cpu (nnUNetPlans_CPUBudget), default (nnUNetPlans), auto (cpu without a GPU)."
        ),
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing converted dataset of the same name.")
    ] = False,
    skip_convert: Annotated[
        bool,
        typer.Option(
            "--skip-convert", help="Plan and preprocess the dataset already in nnUNet_raw (needs --dataset-id)."
        ),
    ] = False,
    nnunet_log: Annotated[bool, typer.Option("--nnunet-log", help="Show nnU-Net's own console output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Convert a dataset to nnU-Net's raw format, then fingerprint, plan and preprocess it."""
    configurations = tuple(config or ("2d",))
    try:
        for c in configurations:
            check_choice("configuration", c, seg_train.CONFIGURATIONS)
        chosen_budget = seg_train.resolve_budget(budget)
        env = nnunet_env.apply()
        if skip_convert:
            if dataset_id is None:
                raise UsageError("--skip-convert needs --dataset-id")
        else:
            converters = _converters()
            if source not in converters:
                raise UsageError(f"unknown source {source!r}; valid: {', '.join(converters)}")
            if not input_dir.is_dir():
                raise FileNotFoundError(f"{input_dir}: no such folder (--input)")
            options = {"overwrite": True} if overwrite else {}
            folder = Path(converters[source](input_dir, env.raw, dataset_id, **options))
            dataset_id = seg_train.dataset_id_of(folder)
            if not as_json:
                typer.echo(f"converted {source} {input_dir} → {folder}")
        prepared = seg_train.plan_and_preprocess(dataset_id, configurations, chosen_budget, verbose=nnunet_log)
    except SEG_ERRORS as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(prepared.to_dict(), indent=2))
        return
    typer.echo(f"{prepared.dataset_name}: plans {prepared.plans} ({prepared.plans_file}) in {prepared.seconds:.1f} s")
    for c in prepared.configurations:
        typer.echo(
            f"  {c}: patch {prepared.patch_size[c]}  batch {prepared.batch_size[c]}  spacing {prepared.spacing_mm[c]} "
            "mm"
        )
    typer.echo(
        f"next: spineseg train-seg --dataset {prepared.dataset_id} --config {prepared.configurations[0]} --fold 0"
    )


def train_seg(
    dataset: Annotated[int, typer.Option("--dataset", help="nnU-Net dataset id (as prepared).")],
    config: Annotated[str, typer.Option("--config", help="2d or 3d_fullres (3d_lowres where planned).")] = "2d",
    fold: Annotated[str, typer.Option("--fold", help="Cross-validation fold 0–4, or 'all'.")] = "0",
    trainer: Annotated[
        Optional[str],
        typer.Option(
            "--trainer",
            help="nnUNetTrainer, nnUNetTrainer_CPUBudget, nnUNetTrainer_Smoke or any nnU-Net trainer; "
            "default: nnUNetTrainer on CUDA, nnUNetTrainer_CPUBudget on CPU.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help=choice_help(Device))] = "auto",
    epochs: Annotated[
        Optional[int], typer.Option("--epochs", help="Number of epochs (overrides the trainer's).")
    ] = None,
    plans: Annotated[
        Optional[str],
        typer.Option("--plans", help="Plans identifier; default: nnUNetPlans_CPUBudget on CPU, nnUNetPlans on CUDA."),
    ] = None,
    time_budget: Annotated[
        Optional[float],
        typer.Option(
            "--time-budget",
            help="Minutes of training: after the first epoch, the epochs are cut "
            "to what fits (with the learning-rate schedule).",
        ),
    ] = None,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="Skip nnU-Net's final validation.")] = False,
    nnunet_log: Annotated[bool, typer.Option("--nnunet-log", help="Show nnU-Net's own console output.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (epoch lines go to stderr).")
    ] = False,
) -> None:
    """Train one nnU-Net fold in-process; prints losses and pseudo-Dice per epoch, then the validation Dice."""

    def progress(report: seg_train.EpochReport) -> None:
        typer.echo(report.line(), err=as_json)

    try:
        result = seg_train.train(
            dataset,
            config,
            fold,
            trainer,
            device,
            epochs,
            progress,
            plans=plans,
            validate=not no_validate,
            verbose=nnunet_log,
            time_budget_s=None if time_budget is None else time_budget * 60.0,
        )
    except SEG_ERRORS as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    dice = "skipped" if result.final_dice is None else f"{result.final_dice:.4f}"
    typer.echo(
        f"{result.trainer} {result.plans} {result.configuration} fold {result.fold} on {result.device}: "
        f"{result.epochs} epochs in {result.seconds:.1f} s; validation Dice (foreground mean) {dice}"
    )
    typer.echo(f"model: {result.result_folder}")
