"""The ``spineseg`` command line: a thin typer shell over :mod:`spine_seg.api`.

Installed as ``spine_seg_cli`` (the folder ``cli/`` is mapped in pyproject.toml) so that it cannot clash
with any other distribution's top-level ``cli`` package.
"""
