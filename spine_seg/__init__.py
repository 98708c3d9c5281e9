"""spineseg: lumbar spine MRI study → graded degenerative findings (RSNA 2024 format).

``spine_seg.predict_study(path)`` is the one-call API (levels, measurements and measured grades from the
shipped base model; with ``bundle=`` also the 25 competition rows); the heavy modules (torch, nnU-Net) load only
when it is first used, so ``import spine_seg`` stays fast.
"""

from __future__ import annotations

from spine_seg.core.versions import __version__

_LAZY = {
    "predict_study": "spine_seg.inference.predictor",
    "predict_batch": "spine_seg.inference.batch",
    "Predictor": "spine_seg.inference.predictor",
    "StudyResult": "spine_seg.report.result",
    "load_bundle": "spine_seg.inference.bundle",
    "ModelBundle": "spine_seg.inference.bundle",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'spine_seg' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
