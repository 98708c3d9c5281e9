"""Guards on how spineseg installs: names that cannot clash, and the python-gdcm `dl` trap."""

from __future__ import annotations

import tomllib

from conftest import REPO


def test_installed_top_level_names_are_ours():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = cfg["tool"]["setuptools"]["packages"]
    assert packages and all(p.split(".")[0].startswith("spine_seg") for p in packages)
    assert cfg["project"]["scripts"]["spineseg"].startswith("spine_seg_cli.")


def test_no_dl_folder_breaks_pydicom():
    # python-gdcm runs `import dl`; a folder named dl on sys.path would shadow it and break pydicom
    assert not (REPO / "dl").exists()
    import pydicom  # noqa: F401
