"""``spineseg synth``: write a synthetic cohort in the competition's layout. Logic: :mod:`spine_seg.synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spine_seg.core.progress import bars_enabled
from spine_seg.synthetic import CohortConfig, generate_cohort
from spine_seg_cli.common import USER_ERRORS, fail


def synth(
    studies: Annotated[int, typer.Option("--studies", help="Number of studies.")] = 5,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (created; must be empty or a cohort with --overwrite).")
    ] = Path("synthetic_cohort"),
    seed: Annotated[int, typer.Option("--seed", help="Same seed, byte-identical cohort.")] = 0,
    preview: Annotated[bool, typer.Option("--preview", help="Write previews/<study>.png montages.")] = False,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share of studies in test_images/.")] = 0.2,
    label_noise: Annotated[
        float, typer.Option("--label-noise", help="Probability that a grade is replaced by another class.")
    ] = 0.0,
    missing_series: Annotated[
        float, typer.Option("--missing-series", help="Share of studies missing one series.")
    ] = 0.0,
    extra_series: Annotated[
        float, typer.Option("--extra-series", help="Share of studies with an extra Axial T2.")
    ] = 0.0,
    axial: Annotated[
        str, typer.Option("--axial", help="blocks (one oblique block per disc), stack, or mixed.")
    ] = "mixed",
    syntax: Annotated[
        str,
        typer.Option("--syntax", help="DICOM transfer syntax: rle (as the competition), explicit, jpeg-ls, jpeg2000."),
    ] = "rle",
    priors: Annotated[
        Optional[Path],
        typer.Option("--priors", help="A train.csv whose class frequencies to use (default: RSNA 2024's, bundled)."),
    ] = None,
    no_spider: Annotated[bool, typer.Option("--no-spider", help="Skip the SPIDER-layout images/masks.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing cohort in --out.")] = False,
) -> None:
    """Generate synthetic lumbar MRI studies with labels, keypoints, SPIDER-layout masks and exact truth."""
    try:
        cfg = CohortConfig(
            n_studies=studies,
            seed=seed,
            test_fraction=test_fraction,
            label_noise=label_noise,
            missing_series_rate=missing_series,
            extra_series_rate=extra_series,
            axial_mode=axial,
            syntax=syntax,
            spider=not no_spider,
            preview=preview,
            priors_csv=str(priors) if priors else None,
        )
        if bars_enabled():
            with typer.progressbar(length=studies, label="synth", file=None) as bar:
                result = generate_cohort(out, cfg, overwrite=overwrite, progress=lambda i, n, sid: bar.update(1))
        else:  # a log: one line per study
            result = generate_cohort(
                out, cfg, overwrite=overwrite, progress=lambda i, n, sid: typer.echo(f"synth [{i}/{n}] {sid}", err=True)
            )
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    typer.echo(
        f"wrote {len(result.train_ids)} train + {len(result.test_ids)} test studies to {result.out} "
        f"({result.bytes_written / 1e6:.1f} MB, {result.seconds:.1f} s, {studies / result.seconds:.2f} studies/s)"
    )
    typer.echo(f"  competition files: {result.out}/train.csv, train_images/, test_images/, sample_submission.csv")
    typer.echo(
        f"  ground truth: {result.out}/truth/   SPIDER layout: {result.out}/spider/"
        + (f"   previews: {result.out}/previews/" if preview else "")
    )
