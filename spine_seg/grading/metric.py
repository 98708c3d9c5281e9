"""The official RSNA 2024 Lumbar Spine metric, in numpy, with input checks that name the file and the problem.

Kaggle scores a submission by four sample-weighted log losses, averaged with equal weight:

* ``spinal``, ``foraminal``, ``subarticular``: for each condition group, the log loss over the labelled
  rows of that group, each row weighted 1/2/4 by its TRUE class (normal_mild/moderate/severe), as a
  weighted mean (sum of w·loss / sum of w).
* ``any_severe_spinal``: per study, "is any spinal level severe?", predicted by the largest P(severe) over
  that study's labelled spinal rows and weighted by the largest sample weight among those rows.

Predictions are normalised per row to sum to 1 and clipped to ``[eps, 1 - eps]`` with
``eps = np.finfo(float64).eps``, as ``sklearn.metrics.log_loss`` clips. The library does not import sklearn
(it is a test-only cross-check), so scoring stays cheap to import and identical everywhere.

Labels come from train.csv (wide: ``study_id`` + 25 targets written ``Normal/Mild``/``Moderate``/``Severe``)
or from a long "solution" CSV (``row_id`` + one-hot ``normal_mild, moderate, severe`` [+ ``sample_weight``]),
told apart by their columns. Blank (unlabelled) targets are not scored. Submission rows that the labels do
not grade are ignored and counted, so a full test-set submission can be scored against a subset of labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spine_seg.core.constants import (
    CONDITION_GROUPS,
    CONDITIONS,
    GROUP_OF_CONDITION,
    LEVELS,
    SAMPLE_WEIGHTS,
    SEVERITIES,
    SEVERITY_LABELS,
    SUBMISSION_COLUMNS,
    TARGET_COLUMNS,
    normalize_severity,
    parse_row_id,
    row_id,
    row_ids,
)
from spine_seg.core.errors import UsageError

#: sklearn.metrics.log_loss clips probabilities to [EPS, 1 - EPS] with the float64 machine epsilon.
EPS: float = float(np.finfo(np.float64).eps)

#: Columns of the long label frame that :func:`score` reads.
LABEL_COLUMNS: tuple[str, ...] = ("row_id", "study_id", "condition", "level", "severity")
#: The metric's components, in the order Kaggle averages them (and the CLI prints them).
COMPONENTS: tuple[str, ...] = (*CONDITION_GROUPS, "any_severe_spinal")

_SPINAL_CONDITIONS: frozenset[str] = frozenset(CONDITION_GROUPS["spinal"])
_SEVERE: int = SEVERITIES.index("severe")
_SHOW: int = 5  # how many offending row ids an error message shows


@dataclass(frozen=True)
class MetricResult:
    """The four components, their mean (the leaderboard score) and what was scored.

    ``n_rows``: labelled rows scored; ``n_studies``: studies with at least one labelled spinal row (the
    any_severe_spinal samples); ``n_ignored``: submission rows the labels do not grade.
    """

    spinal: float
    foraminal: float
    subarticular: float
    any_severe_spinal: float
    score: float
    n_rows: int
    n_studies: int
    n_ignored: int

    def to_dict(self, counts: bool = False) -> dict[str, float | int]:
        """The five floats of the CLI's ``--json`` contract; with ``counts`` also the row/study counts."""
        d = asdict(self)
        if not counts:
            d = {k: d[k] for k in (*COMPONENTS, "score")}
        return d


def _where(source: str | Path | None) -> str:
    return f"{source}: " if source is not None else ""


def _examples(values: Sequence[object] | pd.Index | pd.Series) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:_SHOW])
    return shown + (f", … ({len(values) - _SHOW} more)" if len(values) > _SHOW else "")


def _require_columns(df: pd.DataFrame, expected: Sequence[str], source: str | Path | None, what: str) -> None:
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise UsageError(
            f"{_where(source)}{what} is missing columns {missing}; expected columns {list(expected)}, "
            f"found {[str(c) for c in df.columns][:10]}{' …' if len(df.columns) > 10 else ''}"
        )


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV with ids kept as text (study ids such as ``0042`` must not become ``42``).

    Only a blank cell counts as missing, so a stray ``NA`` or ``None`` severity is reported as an unknown
    label rather than silently becoming "not graded".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    from spine_seg.core.textio import read_csv as read_any_csv  # encodings detected, errors name the file

    return read_any_csv(path, dtype={"row_id": str, "study_id": str}, keep_default_na=False, na_values=[""])


# ---------------------------------------------------------------------------------------------- labels


def labels_from_train_csv(df: pd.DataFrame, source: str | Path | None = None) -> pd.DataFrame:
    """train.csv (one row per study, 25 targets) → one row per GRADED location.

    Returns columns ``row_id, study_id, condition, level, severity`` with severity in :data:`SEVERITIES`.
    Blank targets are dropped: the competition does not score locations that were not graded.
    """
    _require_columns(df, ("study_id", *TARGET_COLUMNS), source, "train.csv-style labels")
    study = df["study_id"].astype(str).str.strip()
    if study.eq("").any() or df["study_id"].isna().any():
        raise UsageError(f"{_where(source)}blank study_id in {int((study.eq('') | df['study_id'].isna()).sum())} rows")
    dup = study[study.duplicated()].unique()
    if len(dup):
        raise UsageError(
            f"{_where(source)}duplicated study_id: {len(dup)} studies appear more than once ({_examples(dup)})"
        )
    by_label = {label: sev for sev in SEVERITIES for label in (sev, SEVERITY_LABELS[sev])}
    records: list[tuple[str, str, str, str, str]] = []
    unknown: dict[str, str] = {}
    for condition in CONDITIONS:
        for level in LEVELS:
            column = df[f"{condition}_{level}"]
            for sid, value in zip(study, column, strict=True):
                if pd.isna(value) or str(value).strip() == "":
                    continue
                text = str(value).strip()
                severity = by_label.get(text)
                if severity is None:
                    try:
                        severity = normalize_severity(text)
                    except ValueError:
                        unknown.setdefault(text, f"{sid}/{condition}_{level}")
                        continue
                records.append((row_id(sid, condition, level), sid, condition, level, severity))
    if unknown:
        raise UsageError(
            f"{_where(source)}unknown severity labels {sorted(unknown)[:_SHOW]} (first at "
            f"{next(iter(unknown.values()))}); valid: {[SEVERITY_LABELS[s] for s in SEVERITIES]} or {list(SEVERITIES)}"
        )
    return pd.DataFrame.from_records(records, columns=list(LABEL_COLUMNS))


def labels_from_solution(df: pd.DataFrame, source: str | Path | None = None) -> pd.DataFrame:
    """Kaggle's long solution (row_id + one-hot classes [+ sample_weight]) → the same long frame.

    Rows with all three classes blank are unlabelled and dropped. Any other row must be one-hot. A
    ``sample_weight`` column, when present, is used as given (that is what Kaggle's scorer does);
    otherwise the weight follows the true class (1/2/4).
    """
    _require_columns(df, SUBMISSION_COLUMNS, source, "solution-style labels")
    ids = _check_row_ids(df["row_id"], source)
    values = df[list(SEVERITIES)].apply(pd.to_numeric, errors="coerce")
    blank = df[list(SEVERITIES)].isna().all(axis=1).to_numpy()
    arr = values.to_numpy(dtype=float)
    onehot = np.isin(arr, (0.0, 1.0)).all(axis=1) & (np.nansum(arr, axis=1) == 1)
    bad = ~blank & ~onehot
    if bad.any():
        raise UsageError(
            f"{_where(source)}{int(bad.sum())} label rows are not one-hot over {list(SEVERITIES)} "
            f"(exactly one 1, the others 0; blank for ungraded): {_examples(ids[bad])}"
        )
    keep = ~blank
    parsed = [parse_row_id(r) for r in ids[keep]]
    out = pd.DataFrame(
        {
            "row_id": ids[keep],
            "study_id": [p[0] for p in parsed],
            "condition": [p[1] for p in parsed],
            "level": [p[2] for p in parsed],
            "severity": [SEVERITIES[i] for i in arr[keep].argmax(axis=1)],
        }
    )
    if "sample_weight" in df.columns:
        w = pd.to_numeric(df["sample_weight"], errors="coerce").to_numpy(dtype=float)[keep]
        if not (np.isfinite(w) & (w > 0)).all():
            raise UsageError(f"{_where(source)}sample_weight must be a finite number > 0 on every labelled row")
        out["sample_weight"] = w
    return out


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read train.csv or a solution CSV (told apart by their columns) into the long label frame."""
    df = read_csv(path)
    if "row_id" in df.columns:
        return labels_from_solution(df, path)
    if "study_id" in df.columns:
        return labels_from_train_csv(df, path)
    raise UsageError(
        f"{path}: not a label file: expected train.csv columns ['study_id', '{TARGET_COLUMNS[0]}', …] "
        f"or solution columns {list(SUBMISSION_COLUMNS)}, found {[str(c) for c in df.columns][:10]}"
    )


def _check_row_ids(column: pd.Series, source: str | Path | None) -> np.ndarray:
    ids = column.astype(str).str.strip()
    blank = column.isna() | ids.eq("")
    if blank.any():
        raise UsageError(f"{_where(source)}blank row_id in {int(blank.sum())} rows")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise UsageError(f"{_where(source)}duplicated row_id: {len(dup)} ids appear more than once ({_examples(dup)})")
    return ids.to_numpy(dtype=object)


def _check_malformed(ids: Sequence[str] | np.ndarray, source: str | Path | None) -> None:
    malformed = []
    for r in ids:
        try:
            parse_row_id(r)
        except ValueError:
            malformed.append(r)
    if malformed:
        raise UsageError(
            f"{_where(source)}{len(malformed)} malformed row_ids ({_examples(malformed)}): expected "
            f"<study_id>_<condition>_<level> with condition in {list(CONDITIONS)} and level in {list(LEVELS)}"
        )


# ------------------------------------------------------------------------------------------ submission


def check_submission(df: pd.DataFrame, source: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a submission frame; return (row ids, probabilities as float64 n×3 in SEVERITIES order).

    Every row is checked, scored or not: a NaN, negative, infinite or all-zero row means the file is broken
    even where these labels do not look. Rows need not sum to 1; they are normalised when scored.
    """
    _require_columns(df, SUBMISSION_COLUMNS, source, "submission")
    ids = _check_row_ids(df["row_id"], source)
    probs = np.empty((len(df), len(SEVERITIES)), dtype=np.float64)
    for j, sev in enumerate(SEVERITIES):
        raw = df[sev]
        num = pd.to_numeric(raw, errors="coerce")
        nonnum = num.isna() & raw.notna()
        if nonnum.any():
            raise UsageError(
                f"{_where(source)}non-numeric {sev} in {int(nonnum.sum())} rows "
                f"({_examples([f'{i}={v!r}' for i, v in zip(ids[nonnum.to_numpy()], raw[nonnum], strict=True)])})"
            )
        probs[:, j] = num.to_numpy(dtype=np.float64, na_value=np.nan)
    for test, what in (
        (np.isnan, "NaN/blank"),
        (np.isinf, "infinite"),
        (lambda a: a < 0, "negative"),
    ):
        bad = test(probs)
        if bad.any():
            rows = bad.any(axis=1)
            cols = [s for j, s in enumerate(SEVERITIES) if bad[:, j].any()]
            raise UsageError(
                f"{_where(source)}{what} probabilities in {int(rows.sum())} rows (columns {cols}): "
                f"{_examples(ids[rows])}"
            )
    zero = probs.sum(axis=1) == 0
    if zero.any():
        raise UsageError(
            f"{_where(source)}{int(zero.sum())} rows have all-zero probabilities (cannot be normalised): "
            f"{_examples(ids[zero])}"
        )
    return ids, probs


def read_submission(path: str | Path) -> pd.DataFrame:
    """Read and validate a submission CSV (errors name the file)."""
    df = read_csv(path)
    check_submission(df, path)
    return df


# ----------------------------------------------------------------------------------------------- score


def _weighted_log_loss(p_true: np.ndarray, weights: np.ndarray) -> float:
    """Σ w·(−log p) / Σ w, with p the (normalised) probability of the true class, clipped like sklearn."""
    p = np.clip(p_true, EPS, 1.0 - EPS)
    return float(np.sum(weights * -np.log(p)) / np.sum(weights))


def score(labels: pd.DataFrame, submission: pd.DataFrame, source: str | Path | None = None) -> MetricResult:
    """Score a submission frame against the long label frame (see :func:`labels_from_train_csv`).

    ``source`` names the submission file in error messages. Raises ValueError on malformed input, on a
    submission lacking graded row ids, and when a condition group has no graded row (the score would be
    undefined).
    """
    _require_columns(labels, LABEL_COLUMNS, None, "labels")
    ids, probs = check_submission(submission, source)

    label_ids = labels["row_id"].to_numpy(dtype=object)
    position = pd.Index(ids)
    if not position.is_unique:  # pragma: no cover - check_submission already refuses duplicates
        raise UsageError(f"{_where(source)}duplicated row_id")
    idx = position.get_indexer(label_ids)
    missing = label_ids[idx < 0]
    if len(missing):
        raise UsageError(
            f"{_where(source)}submission lacks {len(missing)} of the {len(label_ids)} labelled row_ids "
            f"({_examples(missing)})"
        )
    scored = np.zeros(len(ids), dtype=bool)
    scored[idx] = True
    _check_malformed(ids[~scored], source)
    n_ignored = int((~scored).sum())

    p = probs[idx]
    p = p / p.sum(axis=1, keepdims=True)
    true = labels["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    if true.isna().any():
        bad = labels.loc[true.isna(), "severity"].unique()
        raise UsageError(f"labels hold unknown severities {list(bad)[:_SHOW]}; valid: {list(SEVERITIES)}")
    true = true.to_numpy(dtype=np.int64)
    if "sample_weight" in labels.columns:
        weights = labels["sample_weight"].to_numpy(dtype=np.float64)
    else:
        weights = np.array([SAMPLE_WEIGHTS[s] for s in SEVERITIES])[true]
    p_true = p[np.arange(len(p)), true]

    group = labels["condition"].map(GROUP_OF_CONDITION).to_numpy(dtype=object)
    parts: dict[str, float] = {}
    for name in CONDITION_GROUPS:
        m = group == name
        if not m.any():
            raise UsageError(f"labels grade no {name} row; the metric needs all of {list(CONDITION_GROUPS)}")
        parts[name] = _weighted_log_loss(p_true[m], weights[m])

    spinal = labels["condition"].isin(_SPINAL_CONDITIONS).to_numpy()
    per_study = (
        pd.DataFrame(
            {
                "study_id": labels["study_id"].to_numpy(dtype=object)[spinal],
                "y": (true[spinal] == _SEVERE).astype(np.float64),
                "p": p[spinal, _SEVERE],
                "w": weights[spinal],
            }
        )
        .groupby("study_id", sort=False)
        .max()
    )
    y, ps = per_study["y"].to_numpy(), np.clip(per_study["p"].to_numpy(), EPS, 1.0 - EPS)
    p_true_any = np.where(y == 1.0, ps, 1.0 - ps)
    parts["any_severe_spinal"] = _weighted_log_loss(p_true_any, per_study["w"].to_numpy())

    return MetricResult(
        **parts,
        score=float(np.mean([parts[c] for c in COMPONENTS])),
        n_rows=len(labels),
        n_studies=len(per_study),
        n_ignored=n_ignored,
    )


def score_files(pred_csv: str | Path, labels_csv: str | Path) -> MetricResult:
    """Score a submission CSV against train.csv or a solution CSV."""
    labels = read_labels(labels_csv)
    return score(labels, read_csv(pred_csv), source=pred_csv)


# -------------------------------------------------------------------------------------------- baseline


def prior_table(labels: pd.DataFrame, weighted: bool = True) -> pd.DataFrame:
    """Per (condition, level): class frequencies, times 1/2/4 and renormalised when ``weighted``.

    With weights this is the constant prediction that minimises the weighted log loss at each location
    (argmin_p Σ_k w_k n_k (−log p_k) is p_k ∝ w_k n_k), the floor any model must beat.
    """
    counts = (
        pd.crosstab([labels["condition"], labels["level"]], labels["severity"])
        .reindex(columns=list(SEVERITIES), fill_value=0)
        .reindex(pd.MultiIndex.from_product([CONDITIONS, LEVELS], names=["condition", "level"]), fill_value=0)
        .astype(np.float64)
    )
    if weighted:
        counts = counts * np.array([SAMPLE_WEIGHTS[s] for s in SEVERITIES])
    total = counts.sum(axis=1)
    prior = counts.div(total.where(total > 0), axis=0).fillna(1.0 / len(SEVERITIES))
    prior.columns.name = None
    return prior


def prior_submission(
    labels: pd.DataFrame, weighted: bool = True, study_ids: Sequence[str | int] | None = None
) -> pd.DataFrame:
    """A complete submission (25 rows per study, sample_submission order) predicting :func:`prior_table`.

    ``study_ids`` defaults to the studies in ``labels``; pass others to score the prior on held-out studies.
    A location with no graded row gets 1/3 each.
    """
    prior = prior_table(labels, weighted)
    studies = list(dict.fromkeys(labels["study_id"])) if study_ids is None else [str(s) for s in study_ids]
    ids = [r for s in studies for r in row_ids(s)]
    keys = [parse_row_id(r)[1:] for r in row_ids("0")]
    block = prior.loc[keys].to_numpy()
    out = pd.DataFrame(np.tile(block, (len(studies), 1)), columns=list(SEVERITIES))
    out.insert(0, "row_id", ids)
    return out


def uniform_submission(study_ids: Sequence[str | int]) -> pd.DataFrame:
    """1/3 for every class: the no-information reference (scores ≈ 1.0 on train.csv)."""
    ids = [r for s in study_ids for r in row_ids(s)]
    out = pd.DataFrame(np.full((len(ids), len(SEVERITIES)), 1.0 / len(SEVERITIES)), columns=list(SEVERITIES))
    out.insert(0, "row_id", ids)
    return out
