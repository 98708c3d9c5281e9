"""``spineseg predict``, ``spineseg bundle export|import|list|info`` and ``spineseg demo``.

Logic: :mod:`spine_seg.inference` (predict), :mod:`spine_seg.inference.bundle` (bundles),
:mod:`spine_seg.workflows.demo`.
Exit codes of ``predict``: 0 every study done, 1 some study failed (see errors.csv; the others are written),
2 the command could not start (bad INPUT, bad bundle, bad option, Ray missing or unreachable, workers that
cannot load the bundle). The engines (``--engine local|ray``) are :mod:`spine_seg.inference.engines`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from spine_seg.core import textio
from spine_seg.core.choices import CrossCheck, Device, Mirroring, check_option, choice_help
from spine_seg.core.errors import UsageError
from spine_seg.core.progress import bars_enabled
from spine_seg.segmentation.pseudo_labels import PSEUDO_LABEL_KINDS
from spine_seg_cli.common import USER_ERRORS, fail


def _check_device(device: str) -> str:
    check_option("--device", device, Device)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    return device


def predict(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="A study folder (<study>/<series>/*.dcm) or a folder of them (test_images/)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder: submission.csv, errors.csv, <study>/result.json, report.png, segmentation.nii.gz, "
            "dicom/.",
        ),
    ],
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            help="Model bundle: a folder, a .zip, or the name of an imported bundle. Without it: the shipped base "
            "model's levels, measurements and measured grades, no competition rows (no submission.csv).",
        ),
    ] = None,
    series_csv: Annotated[
        Optional[Path],
        typer.Option("--series-csv", help="series_descriptions CSV (study_id, series_id, series_description)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help=choice_help(Device))] = "auto",
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Predict studies again even when their result.json exists.")
    ] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.png (faster).")] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar over studies and stages (stderr).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the batch summary as JSON.")] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local: this process; ray: Ray actors, models loaded once "
            "per worker (pip install 'spineseg[distributed]').",
        ),
    ] = "local",
    address: Annotated[
        Optional[str],
        typer.Option(
            "--address", help="Ray cluster to join: auto (this node's) or ray://HOST:PORT; default: start a local one."
        ),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option("--workers", help="Ray workers (default: one per CPU of the cluster, or per GPU share)."),
    ] = None,
    gpus_per_worker: Annotated[
        Optional[float],
        typer.Option(
            "--gpus-per-worker",
            help="GPU share of each Ray worker (default 1 when the cluster has GPUs, else 0; 0.5: two per GPU).",
        ),
    ] = None,
    cross_check: Annotated[
        str,
        typer.Option(
            "--cross-check",
            help=choice_help(CrossCheck),
        ),
    ] = "auto",
    mirroring: Annotated[
        str,
        typer.Option("--mirroring", help=choice_help(Mirroring)),
    ] = "superior_inferior",
    dicom_out: Annotated[
        bool,
        typer.Option(
            "--dicom-out/--no-dicom-out",
            help="Also write <study>/dicom/seg.dcm (DICOM SEG) and sr.dcm (Comprehensive 3D SR).",
        ),
    ] = True,
) -> None:
    """Grade every study in INPUT: segmentation, landmarks, crops, ensemble; one submission for all."""
    # Long on purpose: typer declares the 16 options in the signature (the docstring is the --help
    # text, so the reason is here); the body only checks, calls and prints.
    from spine_seg.dicom import read_series_csv
    from spine_seg.inference.batch import ENGINE_START_ERRORS, discover_studies, predict_batch
    from spine_seg.inference.bundle import BundleError, base_model_bundle, load_bundle
    from spine_seg.inference.engines import make_engine
    from spine_seg.inference.outputs import OutputWriteError, check_output_folder, prepare_output_folder
    from spine_seg.inference.predictor import Predictor

    try:  # everything a user can get wrong is checked here, before any model loads (exit 2)
        _check_device(device)
        check_option("--cross-check", cross_check, CrossCheck)
        check_option("--mirroring", mirroring, Mirroring)
        if series_csv is not None:
            if not series_csv.is_file():
                raise FileNotFoundError(f"--series-csv: no such file: {series_csv}")
            read_series_csv(series_csv)
        folders = discover_studies(input_path)
        check_output_folder(out)
        batch_engine = make_engine(engine, address=address, workers=workers, gpus_per_worker=gpus_per_worker)
        if batch_engine is not None:
            from spine_seg.inference.engines.ray_engine import require_ray

            require_ray()
        extra_outputs = None
        if dicom_out:
            from spine_seg.dicom_out import _require_highdicom, write_dicom_outputs

            _require_highdicom()
            extra_outputs = write_dicom_outputs
        # no --model: the shipped base model alone (levels, measurements, measured grades; no competition rows)
        bundle = load_bundle(model) if model is not None else base_model_bundle()
        prepare_output_folder(out)
        # the local engine loads the models here (exit 2 if they cannot load); Ray workers load their own
        predictor = (
            Predictor(bundle, device, cross_check=cross_check, mirroring=mirroring) if batch_engine is None else None
        )
    except (*USER_ERRORS, *ENGINE_START_ERRORS, BundleError) as exc:
        raise fail(exc) from exc

    from tqdm import tqdm

    draw = bars_enabled(progress)  # a bar on a terminal; in a log, one line per finished study
    bar = tqdm(total=len(folders), unit="study", disable=not draw, dynamic_ncols=True)

    def on_progress(i: int, n: int, study: str, stage: str) -> None:
        bar.set_postfix_str(f"{study}: {stage}")
        if stage in ("done", "failed", "resumed"):
            bar.update(1)
            if progress and not draw:
                typer.echo(f"[{i + 1}/{n}] {study}: {stage}", err=True)

    try:
        result = predict_batch(
            input_path,
            bundle,
            out,
            series_csv=series_csv,
            device=device,
            resume=not no_resume,
            report=not no_report,
            progress=on_progress,
            predictor=predictor,
            extra_outputs=extra_outputs,
            engine=batch_engine,
            cross_check=cross_check,
            mirroring=mirroring,
        )
    except (*USER_ERRORS, *ENGINE_START_ERRORS) as exc:  # before the first study (the engine could not start)
        raise fail(exc) from exc
    except OutputWriteError as exc:
        raise fail(exc, code=1) from exc
    finally:
        bar.close()
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    for o in result.outcomes:
        if o.note:
            typer.echo(f"note {o.study}: {o.note}", err=True)
    if as_json:
        typer.echo(textio.dumps(result.to_dict(), indent=1))
    else:
        d = result.to_dict()
        typer.echo(
            f"{d['studies']} studies: {d['done']} predicted, {d['resumed']} already done, {d['failed']} failed "
            f"in {d['seconds']:.1f} s (models loaded in {d['model_load_seconds']:.1f} s)"
        )
        typer.echo(f"submission: {result.submission}" if result.submission is not None else NO_ROWS_LINE)
        for o in result.failed:
            typer.echo(f"  failed {o.study} ({o.stage}): {o.error}", err=True)
        if result.errors:
            where = (
                "where their rows in submission.csv came from: its submission_rows column"
                if result.submission is not None
                else "the stage and reason of each"
            )
            typer.echo(f"errors: {result.errors} ({where})", err=True)
    if result.failed:
        raise typer.Exit(code=1)


#: What ``predict`` says without ``--model``: no submission.csv, and where the grading models come from.
NO_ROWS_LINE = (
    "competition rows: not produced (no grading bundle; --model BUNDLE adds the 25 rows per study: "
    "`spineseg demo --out runs/demo` builds one in runs/demo/bundle); levels, measurements and measured grades "
    "are in each study's result.json and report.png"
)


bundle_app = typer.Typer(
    help="Model bundles: export trained models, import them offline, list and check them.", no_args_is_help=True
)


@bundle_app.command("export")
def bundle_export(
    seg_model: Annotated[
        Path, typer.Option("--seg-model", help="nnU-Net result folder (…/<Trainer>__<Plans>__<config>).")
    ],
    grading: Annotated[
        list[Path],
        typer.Option("--grading", help="ensemble.json, or train-cls run folders / checkpoints (repeatable)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder, or a .zip file.")],
    folds: Annotated[
        Optional[list[str]], typer.Option("--fold", help="nnU-Net folds to include (repeatable; default all).")
    ] = None,
    fallback: Annotated[Optional[Path], typer.Option("--fallback", help="axial_fallback.pt to include.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Bundle name (default: OUT's name).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Write a bundle (folder or zip) with a manifest of versions, label maps, crop settings and checksums."""
    from spine_seg.inference.bundle import BundleError, export_bundle, load_bundle

    try:
        path = export_bundle(
            out,
            seg_model,
            grading if len(grading) > 1 else grading[0],
            folds=folds,
            fallback=fallback,
            name=name,
            overwrite=overwrite,
        )
        b = load_bundle(path)
    except (*USER_ERRORS, BundleError) as exc:
        raise fail(exc) from exc
    typer.echo(f"bundle {b.name}: {path} ({len(b.manifest['files'])} files)")


@bundle_app.command("import")
def bundle_import(
    source: Annotated[Path, typer.Argument(help="Bundle folder or zip (e.g. downloaded on another machine).")],
    name: Annotated[
        Optional[str], typer.Option("--name", help="Install under this name (default: the bundle's).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an installed bundle of that name.")] = False,
) -> None:
    """Check a bundle and install it into $SPINESEG_HOME/bundles/NAME; then `predict --model NAME`."""
    from spine_seg.inference.bundle import BundleError, import_bundle

    try:
        b = import_bundle(source, name, overwrite=overwrite)
    except (*USER_ERRORS, BundleError) as exc:
        raise fail(exc) from exc
    typer.echo(f"installed bundle {b.name} at {b.root}; use: spineseg predict INPUT --model {b.name} --out OUT")


@bundle_app.command("list")
def bundle_list() -> None:
    """Installed bundles."""
    from spine_seg.inference.bundle import bundles_home, installed_bundles

    names = installed_bundles()
    typer.echo(f"{bundles_home()}: " + (", ".join(names) if names else "no bundle installed"))


@bundle_app.command("info")
def bundle_info(
    ref: Annotated[str, typer.Argument(help="Bundle folder, zip or installed name.")],
    checksums: Annotated[bool, typer.Option("--checksums/--no-checksums", help="Verify every file's sha256.")] = True,
) -> None:
    """Check a bundle and print its manifest (without the file list)."""
    from spine_seg.inference.bundle import BundleError, load_bundle

    try:
        b = load_bundle(ref, checksums=checksums)
    except (*USER_ERRORS, BundleError) as exc:
        raise fail(exc) from exc
    doc = {k: v for k, v in b.manifest.items() if k != "files"}
    doc["path"] = str(b.root)
    doc["n_files"] = len(b.manifest["files"])
    typer.echo(textio.dumps(doc, indent=1))


def _comma_list(text: str) -> list[str]:
    """``"0, 1,"`` → ``["0", "1"]``: the names of a comma-separated option, blanks dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


@bundle_app.command("build-base")
def bundle_build_base(
    out: Annotated[Path, typer.Option("--out", help="New folder for the base segmentation model.")],
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data", help="Shared data folder with vb2/ and myosegmentum/ (default: $SPINESEG_DATA or ../shared/data)."
        ),
    ] = None,
    budget_min: Annotated[
        float, typer.Option("--budget-min", help="Training budget per fold, minutes of wall clock.")
    ] = 48.0,
    synthetic: Annotated[int, typer.Option("--synthetic", help="Domain-randomised phantom cases.")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the phantoms and the slab thicknesses.")] = 510,
    folds: Annotated[
        str,
        typer.Option(
            "--folds", help="Comma-separated: 0,1 (cross-validation halves, predicted as an ensemble) and/or all."
        ),
    ] = "0,1",
    device: Annotated[str, typer.Option("--device", help=choice_help(Device))] = "auto",
    parallel: Annotated[
        bool,
        typer.Option(
            "--parallel/--sequential", help="Train the folds at the same time (one core each on a 2-core CPU)."
        ),
    ] = True,
    no_real: Annotated[bool, typer.Option("--no-real", help="Phantoms only (no real volumes needed).")] = False,
    init_from: Annotated[
        Optional[Path],
        typer.Option(
            "--init-from",
            help="A base model folder (same plans) whose folds start the training: fine-tune it on the new data "
            "instead of starting from random weights.",
        ),
    ] = None,
    pseudo_labels_from: Annotated[
        Optional[Path],
        typer.Option(
            "--pseudo-labels-from",
            help="A base model folder (folds 0 and 1) that paints what the real volumes' masks leave out (they label "
            "bodies down to L5 only); each case by the fold that trains on it.",
        ),
    ] = None,
    pseudo_labels: Annotated[
        str,
        typer.Option(
            "--pseudo-labels",
            help="What --pseudo-labels-from paints, comma-separated: sacrum (under L5), canal (behind the bodies).",
        ),
    ] = ",".join(PSEUDO_LABEL_KINDS),
    refine_min: Annotated[
        Optional[float],
        typer.Option(
            "--refine-min",
            help="Then refine for this many minutes per fold: warm-started from the first build, which paints "
            "--pseudo-labels on the real volumes (the shipped model's recipe: --budget-min 48 --refine-min 40). "
            "The first build stays in OUT.stage1.",
        ),
    ] = None,
) -> None:
    """Build the base segmentation model (phantoms + VB2 + MyoSegmenTUM, structure labels) with its recipe and
    provenance."""
    from spine_seg.segmentation.base_model import build_base, build_base_refined

    try:
        _check_device(device)
        fold_list = _comma_list(folds)
        bad = [f for f in fold_list if f not in ("0", "1", "all")]
        if not fold_list or bad:
            raise UsageError(f"unknown fold(s) {bad or folds!r}; valid: 0, 1, all")
        root = None
        if not no_real:
            root = data or Path(os.environ.get("SPINESEG_DATA") or "../shared/data")
            missing = [d for d in ("vb2", "myosegmentum") if not (root / d).is_dir()]
            if missing:
                raise FileNotFoundError(f"{root}: no {', '.join(missing)}/ folder (pass --data DIR, or --no-real)")
        common: dict[str, Any] = {
            "budget_min": budget_min,
            "n_synthetic": synthetic,
            "seed": seed,
            "folds": fold_list,
            "device": device,
            "workers": 2,
            "parallel": parallel and len(fold_list) > 1,
            "real": () if no_real else ("vb2", "myosegmentum"),
            "init_from": init_from,
            "pseudo_labels": _comma_list(pseudo_labels),
        }
        if refine_min is None:
            result = build_base(out, root, pseudo_labels_from=pseudo_labels_from, **common)
        else:
            if pseudo_labels_from is not None:
                raise UsageError("--refine-min paints pseudo-labels from its first build: drop --pseudo-labels-from")
            result = build_base_refined(out, root, refine_min=refine_min, **common)
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    for f in result.manifest["folds"]:
        typer.echo(
            f"fold {f['fold']}: {f['epochs']} epochs ({f['iterations']} iterations) in {f['train_seconds']:.0f} s on "
            f"{f['device']}"
        )
    typer.echo(
        f"base model: {result.out} ({result.manifest['seconds']['total']:.0f} s); use it with "
        f"spineseg demo --base-model {result.out}"
    )


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Everything goes here: cohort, nnU-Net folders, models, bundle, predictions.")
    ] = Path("runs/demo"),
    studies: Annotated[int, typer.Option("--studies", help="Synthetic studies in all (training + held out).")] = 28,
    test_studies: Annotated[int, typer.Option("--test-studies", help="Held-out studies to predict and score.")] = 6,
    seg_minutes: Annotated[
        float, typer.Option("--seg-minutes", help="Wall-clock budget of the nnU-Net training.")
    ] = 4.5,
    grading_epochs: Annotated[int, typer.Option("--grading-epochs", help="Maximum epochs per grading fold.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the cohort.")] = 7,
    device: Annotated[str, typer.Option("--device", help=choice_help(Device))] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
    base_model: Annotated[
        Optional[str],
        typer.Option(
            "--base-model",
            help="Base segmentation model folder, 'shipped' (the one inside the package, default) or 'none' (train "
            "nnU-Net on the cohort instead).",
        ),
    ] = "shipped",
) -> None:
    """Synthesise a cohort, train grading (and segmentation unless a base model is used), predict held-out studies,
    score, report."""
    from spine_seg.workflows.demo import DemoConfig, run_demo

    try:
        _check_device(device)
        cfg = DemoConfig(
            studies=studies,
            test_studies=test_studies,
            seg_minutes=seg_minutes,
            grading_epochs=grading_epochs,
            seed=seed,
            device=device,
            base_model=None if base_model in (None, "none") else base_model,
        )
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    result = run_demo(out, cfg, echo=typer.echo, progress=progress)
    if result.failed:
        raise typer.Exit(code=1)
