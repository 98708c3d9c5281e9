"""``spineseg data`` commands: list the public datasets, verify a local copy, fetch one.

The logic lives in :mod:`spine_seg_external_data`; this module parses, calls and prints. Exit codes are
meant for scripts: 0 the dataset is complete, 1 it is not (files missing or wrong, or the download
failed), 2 a user error (unknown dataset, missing folder, a dataset that must be downloaded by hand).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from spine_seg_cli.common import USER_ERRORS, fail
from spine_seg_external_data import download as fetching
from spine_seg_external_data import registry as ext

app = typer.Typer(
    help="Public datasets (SPIDER, RSNA 2024, MyoSegmenTUM): list them, verify a local copy, fetch one.",
    no_args_is_help=True,
)


def _note(msg: str) -> None:
    typer.echo(msg, err=True)


def _print_report(report: ext.VerifyReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    if report.complete:
        typer.echo(f"{report.dataset}: complete in {report.root} ({len(report.ok)} checks passed)")
    else:
        typer.echo(f"{report.dataset}: INCOMPLETE in {report.root} ({len(report.problems)} problems)")
        for p in report.problems:
            typer.echo(f"  {p}")
    for n in report.notes:
        typer.echo(f"  note: {n}")


@app.command("list")
def list_datasets(
    as_json: Annotated[bool, typer.Option("--json", help="Print the registry entries as JSON.")] = False,
) -> None:
    """Show every dataset the registry knows: name, title, licence and landing page."""
    try:
        registry = ext.load_registry()
    except ext.ExternalDataError as exc:
        raise fail(exc) from exc
    datasets = list(registry.datasets.values())
    if as_json:
        typer.echo(json.dumps({"datasets": [d.to_dict() for d in datasets]}, indent=2, ensure_ascii=False))
        return
    w_name = max(len("name"), *(len(d.name) for d in datasets))
    w_lic = max(len("licence"), *(len(d.licence) for d in datasets))
    typer.echo(f"{'name':<{w_name}}  {'licence':<{w_lic}}  title / url")
    for d in datasets:
        typer.echo(f"{d.name:<{w_name}}  {d.licence:<{w_lic}}  {d.title}")
        typer.echo(f"{'':<{w_name}}  {'':<{w_lic}}  {d.landing_url}")


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="Dataset name (see `spineseg data list`).")],
    directory: Annotated[Path, typer.Argument(help="The folder that should hold the dataset.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a folder against the registry: required files, file counts, and recorded sha256 checksums."""
    try:
        report = ext.verify(name, directory)
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    _print_report(report, as_json)
    raise typer.Exit(code=0 if report.complete else 1)


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset name (see `spineseg data list`).")],
    dest: Annotated[
        Optional[Path],
        typer.Option("--dest", help="Target folder. Default: $SPINESEG_HOME/data/NAME (~/.spineseg/data/NAME)."),
    ] = None,
    url: Annotated[
        Optional[str],
        typer.Option(
            "--url",
            help=f"Fetch this one file (archive or data file) instead of the registered ones. "
            f"${ext.BASE_URL_ENV} instead re-roots every registered file under a mirror.",
        ),
    ] = None,
    keep_archives: Annotated[bool, typer.Option("--keep-archives", help="Keep .zip/.tar.* after extracting.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final verify report as JSON.")] = False,
) -> None:
    """Download a dataset (resumable, checksum-checked, safely extracted), then verify it."""
    target = dest if dest is not None else fetching.default_dest(name)
    try:
        report = fetching.fetch(
            name, target, url=url, keep_archives=keep_archives, progress=fetching.StderrProgress(), log=_note
        )
    except ext.ManualDownloadRequired as exc:
        raise fail(exc, code=2) from exc
    except ext.DownloadError as exc:
        raise fail(exc, code=1) from exc
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    _print_report(report, as_json)
    raise typer.Exit(code=0 if report.complete else 1)
