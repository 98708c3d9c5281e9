"""The one train → bundle recipe for grading: crop table → K-fold models → ensemble.json (→ temperatures)
(→ axial fallback), then :func:`spine_seg.inference.bundle.export_bundle`.

The demo, ``spineseg train-cls``, the tests' tiny bundle and the benchmarks all train this way; they differ
only in the arguments, so a change to the recipe reaches all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GradingRun:
    """What :func:`train_grading` made: the run folder, the crop table, the cross-validation result, the
    ensemble file, the axial fallback checkpoint (None without one) and the temperature fit (None unless asked)."""

    run_dir: Path
    table: Any  # spine_seg.grading.dataset.CropTable
    cv: Any  # spine_seg.grading.train.CVResult
    ensemble: Path
    fallback: Path | None
    temperature_fit: Any = None  # spine_seg.grading.ensemble.TemperatureFit


def train_grading(
    data: str | Path,
    crop_cache: str | Path,
    specs: Mapping[str, Any],
    cfg: Any,
    run_dir: str | Path,
    *,
    groups: Sequence[str] | None = None,
    fallback: bool = True,
    temperatures: str = "none",
    echo: Callable[[str], None] = print,
    crop_progress: Callable[[int, int, str], None] | None = None,
    on_table: Callable[[Any], None] | None = None,
) -> GradingRun:
    """Train grading models on a competition-layout folder ``data`` into ``run_dir``.

    ``cfg`` is a :class:`spine_seg.grading.train.TrainConfig`. ``groups`` limits the crop table (default:
    every group of ``specs``). ``temperatures``: ``"none"`` (no fit), ``"fit"`` (fit per-group temperatures on
    the out-of-fold predictions and write ``temperature.json``) or ``"apply"`` (also use them in
    ``ensemble.json``). ``fallback`` also trains the Axial T2 fallback model. ``on_table`` sees the crop table
    before training (the CLI lists the skipped studies).
    """
    from spine_seg.grading.dataset import build_crop_table
    from spine_seg.grading.ensemble import Ensemble, fit_temperature
    from spine_seg.grading.fallback import build_fallback_table, train_fallback
    from spine_seg.grading.train import train_cv

    run_dir = Path(run_dir)
    extra: dict[str, Any] = {} if groups is None else {"groups": tuple(groups)}
    if crop_progress is not None:
        extra["progress"] = crop_progress
    table = build_crop_table(data, crop_cache, specs, **extra)
    if on_table is not None:
        on_table(table)
    cv = train_cv(table, cfg, run_dir, echo=echo)
    fit = None
    if temperatures != "none":
        oof_labels = table.labels[table.labels.study_id.isin(set(cv.oof_rows.study_id))]
        fit = fit_temperature(cv.oof, oof_labels, "metric", tuple(groups or cfg.groups), rows=set(cv.oof_rows.row_id))
    applied = fit.temperatures if fit is not None and temperatures == "apply" else None
    ensemble = Ensemble.load([run_dir], temperatures=applied, device="cpu").save(run_dir / "ensemble.json")
    if fit is not None:
        (run_dir / "temperature.json").write_text(json.dumps(fit.to_dict(), indent=1))
    fb = train_fallback(build_fallback_table(data), cfg, run_dir, echo=echo)[0] if fallback else None
    return GradingRun(run_dir, table, cv, ensemble, fb, fit)
