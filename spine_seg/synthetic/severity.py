"""Severity sampling with the competition's class frequencies, study-level correlation and label noise.

Marginals: each condition × level draws Normal/Mild, Moderate, Severe with the frequencies of RSNA 2024
``train.csv`` (bundled as ``severity_counts.csv``; pass another train.csv to use its counts).
Correlation: a Gaussian copula with one latent "degeneration" factor per study, so a study with a severe
level tends to have other abnormal levels, as real spines do; the copula leaves the marginals exact.
Label noise: with probability ``label_noise`` the reported label is replaced by one of the two other
classes, uniformly — the true severity stays in truth.json, the noisy one goes to train.csv.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES, SEVERITY_FROM_LABEL
from spine_seg.core.errors import UsageError


def load_counts(train_csv: str | Path | None = None) -> pd.DataFrame:
    """Per condition × level: counts of each severity and of blanks (``condition, level, normal_mild, …, blank``)."""
    if train_csv is None:
        with resources.files("spine_seg.synthetic").joinpath("severity_counts.csv").open() as f:
            return pd.read_csv(f, comment="#")
    path = Path(train_csv)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise UsageError(f"{path}: cannot read train.csv: {exc}") from exc
    rows = []
    for c in CONDITIONS:
        for lv in LEVELS:
            col = f"{c}_{lv}"
            if col not in df.columns:
                raise UsageError(f"{path}: no column {col!r}; is this the competition's train.csv?")
            vc = df[col].map(SEVERITY_FROM_LABEL).value_counts()
            rows.append(
                {
                    "condition": c,
                    "level": lv,
                    **{s: int(vc.get(s, 0)) for s in SEVERITIES},
                    "blank": int(df[col].isna().sum()),
                }
            )
    return pd.DataFrame(rows)


def probabilities(counts: pd.DataFrame) -> np.ndarray:
    """[condition, level, severity] probabilities from counts (blanks excluded)."""
    p = np.zeros((len(CONDITIONS), len(LEVELS), len(SEVERITIES)))
    for row in counts.itertuples(index=False):
        c, lv = CONDITIONS.index(row.condition), LEVELS.index(row.level)
        n = np.array([getattr(row, s) for s in SEVERITIES], dtype=float)
        p[c, lv] = n / n.sum()
    return p


def blank_rates(counts: pd.DataFrame) -> np.ndarray:
    """[condition, level] fraction of blank grades (mostly subarticular L1/L2: the axial did not reach it)."""
    out = np.zeros((len(CONDITIONS), len(LEVELS)))
    for row in counts.itertuples(index=False):
        total = sum(getattr(row, s) for s in SEVERITIES) + row.blank
        out[CONDITIONS.index(row.condition), LEVELS.index(row.level)] = row.blank / total
    return out


def sample_severities(p: np.ndarray, rng: np.random.Generator, correlation: float = 0.35) -> np.ndarray:
    """Integer severities [condition, level] (0 normal_mild, 1 moderate, 2 severe) for one study."""
    f = rng.standard_normal()
    e = rng.standard_normal(p.shape[:2])
    u = ndtr(np.sqrt(correlation) * f + np.sqrt(1 - correlation) * e)
    cum = np.cumsum(p, axis=-1)
    return (u[..., None] > cum[..., :2]).sum(axis=-1)


def add_label_noise(sev: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Replace each grade, with probability ``rate``, by one of the two other classes."""
    if not 0 <= rate < 1:
        raise UsageError(f"label noise rate must be in [0, 1), got {rate}")
    flip = rng.random(sev.shape) < rate
    shift = rng.integers(1, 3, sev.shape)
    return np.where(flip, (sev + shift) % 3, sev)
