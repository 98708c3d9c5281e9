"""Average grading models over folds and backbones, calibrate per group, and write a study's 25 rows.

- :class:`Ensemble` loads fold checkpoints (files, or run folders holding ``fold*.pt``). A crop's
  probabilities are the weighted mean over the members that have a head for its condition group: each
  backbone (or run folder) has a weight (default 1), shared equally by its folds.
- Temperatures, one per condition group, are fitted on out-of-fold predictions
  (:func:`fit_temperature`): ``p ∝ p^(1/T)``, chosen on a grid that includes T = 1, minimising the official
  metric (default; coordinate descent over the groups, since the spinal temperature also moves
  any_severe_spinal) or the weighted NLL of the group. Including T = 1 means the fit never makes its
  objective worse on the out-of-fold predictions.
- :meth:`Ensemble.predict_study` turns a study's crops into the 25 rows of the submission, every row
  summing to 1. Locations without a crop take the axial fallback's output when given (subarticular only),
  else the training prior (the members' mean :func:`smoothed_prior`: the weight-optimal prior table of
  :mod:`spine_seg.grading.metric` with one pseudo-count per class, so no class is ever 0); ``sources`` records
  which.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spine_seg.core.choices import SOURCE_FALLBACK, SOURCE_MODEL, SOURCE_PRIOR
from spine_seg.core.constants import (
    CONDITION_GROUPS,
    CONDITIONS,
    GROUP_OF_CONDITION,
    LEVELS,
    SAMPLE_WEIGHTS,
    SEVERITIES,
    parse_row_id,
    row_ids,
)
from spine_seg.core.errors import UsageError
from spine_seg.grading import metric
from spine_seg.grading.crops import CropSpec, keypoint_crops
from spine_seg.grading.models import GradingModel, model_from_checkpoint, predict_probs, read_checkpoint, resolve_device

log = logging.getLogger(__name__)

OBJECTIVES: tuple[str, ...] = ("metric", "nll")
TEMPERATURE_GRID: np.ndarray = np.unique(np.concatenate([np.geomspace(0.4, 4.0, 31), [1.0]]))


# ------------------------------------------------------------------------------------------ rows → submission


def normalise_rows(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    s = p.sum(axis=1, keepdims=True)
    return np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / p.shape[1])


def submission_from_rows(
    study_ids: Sequence[str],
    rows: pd.DataFrame | None,
    prior: pd.DataFrame | None,
    fallback: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """25 rows per study (sample_submission order), each summing to 1, and where each row came from.

    ``rows``: ``row_id`` + the three probabilities, predicted from crops (rows of other studies are
    ignored); ``fallback``: the same for rows without a crop (the axial fallback); ``prior``: a
    :func:`smoothed_prior` (or :func:`spine_seg.grading.metric.prior_table`) for the rest (None: 1/3 each).
    Returns (submission, sources indexed by row_id).
    """
    ids = [r for s in study_ids for r in row_ids(s)]
    keys = [parse_row_id(r)[1:] for r in ids]
    if prior is None or not ids:
        out = np.full((len(ids), len(SEVERITIES)), np.nan)
    else:
        out = prior.reindex(pd.MultiIndex.from_tuples(keys))[list(SEVERITIES)].to_numpy(dtype=np.float64)
    out = np.where(np.isnan(out), 1.0 / len(SEVERITIES), out)
    source = np.full(len(ids), SOURCE_PRIOR, dtype=object)
    pos = pd.Index(ids)
    for frame, name in ((fallback, SOURCE_FALLBACK), (rows, SOURCE_MODEL)):
        if frame is None or frame.empty:
            continue
        frame = frame.drop_duplicates("row_id", keep="last")
        idx = pos.get_indexer(frame["row_id"])
        hit = idx >= 0
        out[idx[hit]] = frame.loc[hit, list(SEVERITIES)].to_numpy(dtype=np.float64)
        source[idx[hit]] = name
    sub = pd.DataFrame(normalise_rows(out), columns=list(SEVERITIES))
    sub.insert(0, "row_id", ids)
    return sub, pd.Series(source, index=pos, name="source")


def smoothed_prior(labels: pd.DataFrame, pseudo_count: float = 1.0) -> pd.DataFrame:
    """:func:`spine_seg.grading.metric.prior_table` with ``pseudo_count`` added to every class count first.

    The weight-optimal prior (counts × 1/2/4, renormalised) of a location where a class was never seen is
    0 for that class, and one such label in new studies costs −ln(eps) ≈ 36. Used wherever the prior
    stands in for a prediction (locations without a crop), so no row is ever 0.
    """
    counts = (
        pd.crosstab([labels["condition"], labels["level"]], labels["severity"])
        .reindex(columns=list(SEVERITIES), fill_value=0)
        .reindex(pd.MultiIndex.from_product([CONDITIONS, LEVELS], names=["condition", "level"]), fill_value=0)
        .astype(np.float64)
    ) + float(pseudo_count)
    weighted = counts * np.array([SAMPLE_WEIGHTS[s] for s in SEVERITIES])
    prior = weighted.div(weighted.sum(axis=1), axis=0)
    prior.columns.name = None
    return prior


# ------------------------------------------------------------------------------------------------ temperature


def _row_groups(ids: Iterable[str]) -> np.ndarray:
    return np.array([GROUP_OF_CONDITION[parse_row_id(r)[1]] for r in ids], dtype=object)


def apply_temperature(
    sub: pd.DataFrame,
    temperatures: Mapping[str, float],
    rows: Iterable[str] | None = None,
    _groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """``p ∝ p^(1/T_group)`` per row (only ``rows`` when given, e.g. the model's rows, not the prior's)."""
    out = sub.copy()
    if not temperatures:
        return out
    group = _row_groups(out["row_id"]) if _groups is None else _groups
    t = np.ones(len(out))
    for g, value in temperatures.items():
        t[group == g] = float(value)
    if rows is not None:
        t = np.where(out["row_id"].isin(set(rows)).to_numpy(), t, 1.0)
    p = np.clip(out[list(SEVERITIES)].to_numpy(dtype=np.float64), 1e-12, 1.0)
    logp = np.log(p) / t[:, None]
    logp -= logp.max(axis=1, keepdims=True)
    out[list(SEVERITIES)] = normalise_rows(np.exp(logp))
    return out


def _group_nll(sub: pd.DataFrame, labels: pd.DataFrame, group: str) -> float:
    lab = labels[labels.condition.map(GROUP_OF_CONDITION) == group]
    if lab.empty:
        return 0.0
    p = sub.set_index("row_id").loc[lab.row_id, list(SEVERITIES)].to_numpy()
    p = p / p.sum(axis=1, keepdims=True)
    y = lab.severity.map({s: i for i, s in enumerate(SEVERITIES)}).to_numpy()
    w = np.array([SAMPLE_WEIGHTS[s] for s in SEVERITIES])[y]
    return float(np.sum(w * -np.log(np.clip(p[np.arange(len(y)), y], metric.EPS, 1.0))) / w.sum())


@dataclass
class TemperatureFit:
    temperatures: dict[str, float]
    objective: str
    before: dict
    after: dict

    def to_dict(self) -> dict:
        return asdict(self)


def fit_temperature(
    sub: pd.DataFrame,
    labels: pd.DataFrame,
    objective: str = "metric",
    groups: Iterable[str] | None = None,
    rows: Iterable[str] | None = None,
    grid: Sequence[float] | np.ndarray = TEMPERATURE_GRID,
    sweeps: int = 2,
) -> TemperatureFit:
    """One temperature per condition group on out-of-fold predictions (see module doc).

    ``sub`` holds at least the labelled rows; ``rows`` limits the rows that are rescaled (default: all);
    ``groups`` defaults to the groups with labelled rows.
    """
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}; valid: {list(OBJECTIVES)}")
    have = set(labels.condition.map(GROUP_OF_CONDITION))
    groups = [g for g in (CONDITION_GROUPS if groups is None else groups) if g in have]
    temps = {g: 1.0 for g in groups}
    full = set(CONDITION_GROUPS) <= have
    sub = sub[sub["row_id"].isin(set(labels["row_id"]))].reset_index(drop=True)  # only labelled rows matter
    row_groups = _row_groups(sub["row_id"])
    rows = None if rows is None else sub["row_id"].isin(set(rows)).to_numpy()

    def scale(t: Mapping[str, float]) -> pd.DataFrame:
        out = apply_temperature(sub, t, None, row_groups)
        if rows is not None:
            out.loc[~rows, list(SEVERITIES)] = sub.loc[~rows, list(SEVERITIES)].to_numpy()
        return out

    def objective_value(t: Mapping[str, float], group: str) -> float:
        scaled = scale(t)
        if objective == "metric" and full:
            return metric.score(labels, scaled).score
        return _group_nll(scaled, labels, group)

    before = metric.score(labels, sub).to_dict() if full else {g: _group_nll(sub, labels, g) for g in groups}
    for _ in range(max(1, sweeps if objective == "metric" else 1)):
        for g in groups:
            values = [objective_value({**temps, g: float(t)}, g) for t in grid]
            best = int(np.argmin(values))
            # prefer the current temperature on ties, so a flat objective leaves it alone
            current = objective_value(temps, g)
            if values[best] < current - 1e-12:
                temps[g] = float(grid[best])
    final = scale(temps)
    after = metric.score(labels, final).to_dict() if full else {g: _group_nll(final, labels, g) for g in groups}
    return TemperatureFit(dict(temps), objective, before, after)


def combine_predictions(frames: Mapping[str, pd.DataFrame], weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Weighted mean of submission-format frames (``row_id`` + 3 columns) over the row ids they share."""
    if not frames:
        raise UsageError("no predictions to combine")
    weights = {k: float((weights or {}).get(k, 1.0)) for k in frames}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise UsageError(f"ensemble weights must be ≥ 0 with a positive sum (got {weights})")
    common = None
    for f in frames.values():
        common = list(f["row_id"]) if common is None else [r for r in common if r in set(f["row_id"])]
    if not common:
        raise UsageError("the predictions share no row_id")
    total = np.zeros((len(common), len(SEVERITIES)))
    for k, f in frames.items():
        p = f.set_index("row_id").loc[common, list(SEVERITIES)].to_numpy(dtype=np.float64)
        total += weights[k] * normalise_rows(p)
    out = pd.DataFrame(normalise_rows(total), columns=list(SEVERITIES))
    out.insert(0, "row_id", common)
    return out


# -------------------------------------------------------------------------------------------------- ensemble


@dataclass
class Member:
    path: Path
    name: str  # the run folder's name, or the backbone for a loose checkpoint
    model: GradingModel
    meta: dict
    weight: float = 1.0

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.meta["groups"])


@dataclass
class StudyPrediction:
    """A study's 25 submission rows and, per row, where it came from (model, axial_fallback or prior)."""

    study_id: str
    submission: pd.DataFrame
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def fallback_rows(self) -> dict[str, str]:
        return {r: s for r, s in self.sources.items() if s != SOURCE_MODEL}

    def to_dict(self) -> dict:
        return {
            "study_id": self.study_id,
            "rows": [
                {"row_id": r.row_id, **{s: float(getattr(r, s)) for s in SEVERITIES}, "source": self.sources[r.row_id]}
                for r in self.submission.itertuples(index=False)
            ],
            "notes": list(self.notes),
        }


def _checkpoint_paths(sources: Iterable[str | Path]) -> list[Path]:
    paths: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = sorted(p.rglob("fold*.pt"))
            if not found:
                raise FileNotFoundError(f"{p}: no fold*.pt checkpoints in this folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"no such checkpoint or folder: {p}")
    return paths


class Ensemble:
    """Grading models of several folds/backbones behind one ``predict`` (see module doc)."""

    def __init__(
        self,
        members: Sequence[Member],
        temperatures: Mapping[str, float] | None = None,
        device: str | torch.device = "cpu",
    ):
        if not members:
            raise UsageError("an ensemble needs at least one checkpoint")
        self.members = list(members)
        self.temperatures = dict(temperatures or {})
        self.device = resolve_device(device)
        for m in self.members:
            m.model.to(self.device).eval()
        self.specs = self._specs()
        priors = [self._prior(m.meta) for m in self.members if "prior" in m.meta]
        self.prior = sum(priors) / len(priors) if priors else None

    @staticmethod
    def _prior(meta: Mapping) -> pd.DataFrame:
        p = meta["prior"]
        idx = pd.MultiIndex.from_tuples([tuple(i) for i in p["index"]], names=["condition", "level"])
        return pd.DataFrame(p["values"], index=idx, columns=p["columns"])

    def _specs(self) -> dict[str, CropSpec]:
        specs: dict[str, CropSpec] = {}
        for m in self.members:
            for g, d in m.meta["crop_specs"].items():
                spec = CropSpec(**d)
                if specs.setdefault(g, spec) != spec:
                    raise UsageError(f"{m.path}: crop spec for {g} {spec} differs from another member's {specs[g]}")
        return specs

    @classmethod
    def load(
        cls,
        sources: Iterable[str | Path],
        weights: Mapping[str, float] | None = None,
        temperatures: Mapping[str, float] | None = None,
        device: str | torch.device = "auto",
    ) -> Ensemble:
        """Checkpoints from files and/or run folders. ``weights``: by run-folder name or backbone (default 1)."""
        paths = _checkpoint_paths(sources)
        members: list[Member] = []
        for p in paths:
            meta = read_checkpoint(p)
            state_free = {k: v for k, v in meta.items() if k != "state_dict"}
            name = p.parent.name if p.name.startswith("fold") else meta["backbone"]
            members.append(Member(p, name, model_from_checkpoint(meta), state_free))
        weights = dict(weights or {})
        unknown = set(weights) - {m.name for m in members} - {m.meta["backbone"] for m in members}
        if unknown:
            raise UsageError(
                f"ensemble weights for unknown members {sorted(unknown)}; members: {sorted({m.name for m in members})}"
            )
        for m in members:
            m.weight = float(weights.get(m.name, weights.get(m.meta["backbone"], 1.0)))
        return cls(members, temperatures, device)

    @property
    def groups(self) -> set[str]:
        return {g for m in self.members for g in m.groups}

    def predict_crops(
        self, crops: np.ndarray, groups: Sequence[str], calibrated: bool = True, batch_size: int = 64
    ) -> np.ndarray:
        """[N, 3] probabilities for crops [N, C, H, W] of the given groups (rows sum to 1)."""
        crops = np.asarray(crops, dtype=np.float32)
        groups = list(groups)
        out = np.zeros((len(crops), len(SEVERITIES)))
        for g in dict.fromkeys(groups):
            idx = np.flatnonzero(np.array(groups) == g)
            who = [m for m in self.members if g in m.groups and m.weight > 0]
            if not who:
                raise UsageError(f"no ensemble member grades {g} (members grade {sorted(self.groups)})")
            # each name (backbone / run) shares its weight equally among its folds
            per_name: dict[str, int] = {}
            for m in who:
                per_name[m.name] = per_name.get(m.name, 0) + 1
            total = 0.0
            for m in who:
                w = m.weight / per_name[m.name]
                out[idx] += w * predict_probs(m.model, crops[idx], [g] * len(idx), self.device, batch_size)
                total += w
            out[idx] /= total
        out = normalise_rows(out)
        if calibrated and self.temperatures:
            t = np.array([float(self.temperatures.get(g, 1.0)) for g in groups])
            logp = np.log(np.clip(out, 1e-12, 1.0)) / t[:, None]
            out = normalise_rows(np.exp(logp - logp.max(axis=1, keepdims=True)))
        return out

    def predict_study(
        self,
        study_id: str,
        crops: Mapping[tuple[str, str], np.ndarray],
        fallback: Mapping[tuple[str, str], np.ndarray] | None = None,
        unsure: Iterable[tuple[str, str]] = (),
    ) -> StudyPrediction:
        """The study's 25 rows from crops keyed by (condition, level).

        ``fallback``: probabilities (e.g. :class:`~spine_seg.grading.fallback.AxialFallback`) used where a
        location has no crop, or is listed in ``unsure`` (its crop is not trusted); other locations
        without a crop get the prior. ``sources`` says which for every row.
        """
        unsure = set(unsure)
        keys = [k for k in crops if GROUP_OF_CONDITION[k[0]] in self.groups and k not in unsure]
        notes: list[str] = []
        rows = None
        if keys:
            probs = self.predict_crops(np.stack([crops[k] for k in keys]), [GROUP_OF_CONDITION[k[0]] for k in keys])
            rows = pd.DataFrame(probs, columns=list(SEVERITIES))
            rows.insert(0, "row_id", [f"{study_id}_{c}_{lv}" for c, lv in keys])
        fb = None
        if fallback:
            use = [k for k in fallback if k not in keys]
            if use:
                fb = pd.DataFrame(normalise_rows(np.stack([fallback[k] for k in use])), columns=list(SEVERITIES))
                fb.insert(0, "row_id", [f"{study_id}_{c}_{lv}" for c, lv in use])
        sub, source = submission_from_rows([study_id], rows, self.prior, fb)
        counts = source.value_counts().to_dict()
        if counts.get(SOURCE_FALLBACK):
            notes.append(f"{counts[SOURCE_FALLBACK]} rows from the axial fallback")
        if counts.get(SOURCE_PRIOR):
            notes.append(f"{counts[SOURCE_PRIOR]} rows without a crop: training prior")
        return StudyPrediction(str(study_id), sub, source.to_dict(), notes)

    def predict_keypoints(self, study, keypoints: pd.DataFrame) -> StudyPrediction:
        """Crops at the study's keypoints (competition layout) with the members' crop specs, then predict."""
        crops, warnings = keypoint_crops(study, keypoints, self.specs)
        pred = self.predict_study(
            study.study_id, {k: c.pixels for k, c in crops.items() if GROUP_OF_CONDITION[k[0]] in self.specs}
        )
        pred.notes.extend(warnings)
        return pred

    def to_dict(self) -> dict:
        return {
            "members": [
                {
                    "path": str(m.path),
                    "name": m.name,
                    "backbone": m.meta["backbone"],
                    "fold": m.meta.get("fold"),
                    "groups": list(m.groups),
                    "weight": m.weight,
                    "val_score": m.meta.get("val", {}).get("score"),
                    "weight_source": m.meta.get("weight_source"),
                }
                for m in self.members
            ],
            "temperatures": self.temperatures,
            "crop_specs": {g: asdict(s) for g, s in self.specs.items()},
        }

    def save(self, path: str | Path) -> Path:
        """``ensemble.json``: members (paths, weights), temperatures, crop specs; :meth:`from_json` reads it."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_json(cls, path: str | Path, device: str | torch.device = "auto") -> Ensemble:
        path = Path(path)
        doc = json.loads(path.read_text())
        paths = [Path(m["path"]) if Path(m["path"]).is_absolute() else path.parent / m["path"] for m in doc["members"]]
        weights = {m["name"]: m["weight"] for m in doc["members"]}
        return cls.load(paths, weights, doc.get("temperatures"), device)


__all__ = [
    "OBJECTIVES",
    "SOURCE_FALLBACK",
    "SOURCE_MODEL",
    "SOURCE_PRIOR",
    "Ensemble",
    "Member",
    "StudyPrediction",
    "TemperatureFit",
    "apply_temperature",
    "combine_predictions",
    "fit_temperature",
    "normalise_rows",
    "smoothed_prior",
    "submission_from_rows",
]
