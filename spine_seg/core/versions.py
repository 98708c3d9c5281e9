"""The package versions recorded with every checkpoint, bundle and result, read from installed metadata.

One place, so a grading checkpoint, a bundle manifest and a ``result.json`` name the same packages the same
way; metadata, not imports, so asking costs nothing at start-up.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

#: spineseg's own version (the one place it is written; ``spine_seg.__version__`` re-exports it).
__version__ = "0.1.0"

#: Distributions whose versions decide whether saved models load and behave the same.
TRACKED: tuple[str, ...] = ("torch", "timm", "nnunetv2", "numpy")


def package_versions() -> dict[str, str]:
    out = {"spineseg": __version__, "python": platform.python_version()}
    for dist in TRACKED:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


__all__ = ["TRACKED", "package_versions"]
