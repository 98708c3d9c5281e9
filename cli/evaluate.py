"""``spineseg evaluate``: score a submission CSV with the official RSNA 2024 metric.

Logic: :mod:`spine_seg.grading.metric`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spine_seg.core import textio
from spine_seg.grading import metric
from spine_seg_cli.common import USER_ERRORS, fail


def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="Submission CSV: row_id, normal_mild, moderate, severe.")],
    labels: Annotated[
        Path,
        typer.Option(
            "--labels", help="train.csv (study_id + 25 targets) or a solution CSV (row_id + one-hot classes)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the four components and the score as JSON.")] = False,
) -> None:
    """Score a submission: spinal, foraminal, subarticular and any-severe-spinal weighted log losses, and their mean."""
    try:
        result = metric.score_files(pred, labels)
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(textio.dumps(result.to_dict()))
        return
    values = result.to_dict()
    for name in metric.COMPONENTS:
        typer.echo(f"{name:<18} {values[name]:.4f}")
    typer.echo(f"{'score':<18} {values['score']:.4f}")
    typer.echo(
        f"({result.n_rows} graded rows, {result.n_studies} studies for any_severe_spinal; "
        f"{result.n_ignored} submission rows not graded by the labels were ignored)"
    )
