"""``spineseg`` commands. Logic lives in :mod:`spine_seg`; this module parses, calls and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spine_seg import __version__, api
from spine_seg.core import textio
from spine_seg_cli.common import USER_ERRORS, configure_logging, fail, report_bugs

app = typer.Typer(
    name="spineseg",
    help="Lumbar spine MRI → graded RSNA 2024 findings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spineseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Log every skipped file and decision, and the tracebacks of failures."),
    ] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    report_bugs()
    configure_logging(verbose)


SeriesCsv = Annotated[
    Optional[Path],
    typer.Option("--series-csv", help="study_id,series_id,series_description CSV (the competition's)."),
]


@app.command()
def inspect(
    dicom_dir: Annotated[Path, typer.Argument(help="A study folder, or a folder of studies.")],
    series_csv: SeriesCsv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each study's series: kind (with evidence), stacks, slices, orientation, spacing, warnings."""
    try:
        studies = api.inspect_studies(dicom_dir, series_csv)
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(textio.dumps(api.inspect_report(studies), indent=2))
        return
    for study in studies:
        typer.echo(f"study {study.study_id}  ({study.root})")
        for w in study.warnings:
            typer.echo(f"  ! {w}")
        if study.skipped:
            typer.echo(f"  ! {len(study.skipped)} files skipped (run with -v for reasons)")
        for series in study.series:
            typer.echo(
                f"  series {series.series_id:<14} {series.kind.value:<17} {series.n_slices:>3} slices  "
                f"[{'; '.join(series.kind_evidence)}]"
            )
            for st in series.stacks:
                s = st.summary()
                typer.echo(
                    f"    stack {s['index']}: {s['n_slices']:>3} × {s['matrix'][0]}×{s['matrix'][1]}  "
                    f"{s['orientation']:<8}"
                    f" {s['axis_codes']} {s['obliquity_deg']:5.1f}°  spacing "
                    f"{s['spacing_mm'][0]:.3f}×{s['spacing_mm'][1]:.3f}×{s['spacing_mm'][2]:.2f} mm"
                    f"  thickness {s['slice_thickness_mm']} mm  instances "
                    f"{s['instance_numbers'][0]}–{s['instance_numbers'][1]}"
                )
            for w in series.warnings:
                typer.echo(f"    ! {w}")


@app.command()
def locate(
    dicom_dir: Annotated[Path, typer.Argument(help="A study folder, or a folder of studies.")],
    series: Annotated[str, typer.Option("--series", help="Series id of the source image.")],
    instance: Annotated[int, typer.Option("--instance", help="InstanceNumber of the source image.")],
    x: Annotated[float, typer.Option("--x", help="Pixel column (the competition's x).")],
    y: Annotated[float, typer.Option("--y", help="Pixel row (the competition's y).")],
    series_csv: SeriesCsv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Take a pixel to patient space (LPS mm) and to the nearest slice of every other series."""
    try:
        result = api.locate(dicom_dir, series, instance, x, y, series_csv)
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(textio.dumps(result.to_dict(), indent=2))
        return
    w = result.xyz_lps_mm
    typer.echo(
        f"study {result.study_id}: series {series} instance {instance} ({x:g}, {y:g}) → LPS ({w[0]:.1f}, {w[1]:.1f}, "
        f"{w[2]:.1f}) mm"
    )
    for t in result.targets:
        h = t.hit
        flag = "" if h.inside_fov else "  (outside the image)"
        typer.echo(
            f"  {h.series_id:<14} {t.kind:<17} stack {h.stack_index} instance {h.instance_number:>3}"
            f"  x {h.x_px:7.1f}  y {h.y_px:7.1f}  {h.distance_mm:+6.2f} mm from plane{flag}"
        )


# -- command registrations from other modules of this package (one block per module) --
from spine_seg_cli.data import app as data_app  # noqa: E402

app.add_typer(data_app, name="data")
from spine_seg_cli.evaluate import evaluate  # noqa: E402

app.command()(evaluate)
from spine_seg_cli.synth import synth  # noqa: E402

app.command()(synth)
from spine_seg_cli.grading import train_cls  # noqa: E402

app.command("train-cls")(train_cls)
from spine_seg_cli.seg import prepare, train_seg  # noqa: E402

app.command()(prepare)
app.command("train-seg")(train_seg)
from spine_seg_cli.predict import bundle_app, demo, predict  # noqa: E402

app.command()(predict)
app.add_typer(bundle_app, name="bundle")
app.command()(demo)


if __name__ == "__main__":  # pragma: no cover
    app()
