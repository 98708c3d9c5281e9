"""Where spineseg keeps its files: the one ``SPINESEG_HOME`` resolver.

``$SPINESEG_HOME`` (``~`` expanded) when set, else ``~/.spineseg``. Everything lives under it: nnU-Net's
folders (``nnUNet_raw`` …, :mod:`spine_seg.segmentation.nnunet_env`), installed model bundles
(``bundles/``, :mod:`spine_seg.inference.bundle`) and fetched datasets (``data/<name>``,
:mod:`spine_seg_external_data.registry`). Until issue #12 the dataset fetcher defaulted to
``./spineseg_home``; one default for all keeps a fetched dataset next to the models trained on it, and a
per-user folder cannot end up committed from a checkout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME_VAR = "SPINESEG_HOME"
BUNDLES_DIR = "bundles"
DATA_DIR = "data"


def default_home() -> Path:
    """``~/.spineseg``: the home when ``$SPINESEG_HOME`` is unset or blank."""
    return Path("~/.spineseg").expanduser()


def spineseg_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$SPINESEG_HOME`` (``~`` expanded), else :func:`default_home`: the root of everything spineseg keeps."""
    value = (os.environ if environ is None else environ).get(HOME_VAR, "").strip()
    return Path(value).expanduser() if value else default_home()


def bundles_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where imported model bundles are installed: ``<home>/bundles``."""
    return spineseg_home(environ) / BUNDLES_DIR


def data_home(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where a fetched dataset goes without ``--dest``: ``<home>/data/<name>``."""
    return spineseg_home(environ) / DATA_DIR / name
