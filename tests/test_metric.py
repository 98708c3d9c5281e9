"""The official RSNA 2024 metric: hand-worked vectors, an sklearn cross-check, bad input, the CLI, real labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss
from typer.testing import CliRunner

from spine_seg.core.constants import (
    CONDITION_GROUPS,
    GROUP_OF_CONDITION,
    SAMPLE_WEIGHTS,
    SEVERITIES,
    SEVERITY_LABELS,
    SUBMISSION_COLUMNS,
    TARGET_COLUMNS,
    row_id,
    row_ids,
)
from spine_seg.grading import metric as M
from spine_seg_cli.main import app

runner = CliRunner()
SPINAL, L_FOR, _, L_SUB, _ = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
NM, MOD, SEV = (SEVERITY_LABELS[s] for s in SEVERITIES)


def train_frame(grades: dict[str, dict[str, str]]) -> pd.DataFrame:
    """A train.csv-shaped frame: {study: {"<condition>_<level>": "Severe", ...}}, everything else blank."""
    rows = [{"study_id": s, **{c: g.get(c, np.nan) for c in TARGET_COLUMNS}} for s, g in grades.items()]
    return pd.DataFrame(rows, columns=["study_id", *TARGET_COLUMNS])


def uniform(studies: list[str]) -> pd.DataFrame:
    return M.uniform_submission(studies)


def set_row(sub: pd.DataFrame, rid: str, probs: tuple[float, float, float]) -> None:
    sub.loc[sub["row_id"] == rid, list(SEVERITIES)] = probs


# --------------------------------------------------------------------------------------- hand-worked


def hand_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two studies; the expected values are worked out by hand in test_hand_worked_vector."""
    labels = train_frame(
        {
            "1": {
                f"{SPINAL}_l1_l2": SEV,  # w 4, pred (.25, .25, .5)       → −ln .5  = ln 2
                f"{SPINAL}_l2_l3": NM,  # w 1, pred (.25, 0, .75)        → −ln .25 = 2 ln 2
                f"{L_FOR}_l4_l5": MOD,  # w 2, pred (1, 2, 1) → (.25, .5, .25) → ln 2
                f"{L_FOR}_l5_s1": NM,  # w 1, pred (.8, .1, .1)          → −ln .8
                f"{L_SUB}_l4_l5": SEV,  # w 4, pred (0, 0, 1)            → −ln(1 − eps) ≈ 2.2e-16
                f"{L_SUB}_l5_s1": NM,  # w 1, pred (0, 1, 1)             → −ln(eps) = 52 ln 2 (clipped)
                # spinal l5_s1 is blank: its pred (0, 0, 1) must not reach any_severe_spinal
            },
            "2": {f"{SPINAL}_l1_l2": NM},  # w 1, pred (.5, .5, 0)   → ln 2
        }
    )
    sub = uniform(["1", "2", "3"])  # study 3 is not in the labels: 25 ignored rows
    set_row(sub, row_id("1", SPINAL, "l1_l2"), (0.25, 0.25, 0.5))
    set_row(sub, row_id("1", SPINAL, "l2_l3"), (0.25, 0.0, 0.75))
    set_row(sub, row_id("1", SPINAL, "l5_s1"), (0.0, 0.0, 1.0))
    set_row(sub, row_id("1", L_FOR, "l4_l5"), (1.0, 2.0, 1.0))
    set_row(sub, row_id("1", L_FOR, "l5_s1"), (0.8, 0.1, 0.1))
    set_row(sub, row_id("1", L_SUB, "l4_l5"), (0.0, 0.0, 1.0))
    set_row(sub, row_id("1", L_SUB, "l5_s1"), (0.0, 1.0, 1.0))
    set_row(sub, row_id("2", SPINAL, "l1_l2"), (0.5, 0.5, 0.0))
    return labels, sub


def test_hand_worked_vector():
    # spinal       = (4·ln2 + 1·2ln2 + 1·ln2) / (4+1+1)            = 7 ln2 / 6            = 0.8086717106532695
    # foraminal    = (2·ln2 + 1·(−ln .8)) / (2+1) = ln5 / 3                               = 0.5364793041447001
    # subarticular = (4·(−ln(1−2⁻⁵²)) + 1·52 ln2) / (4+1)          ≈ 36.04365338911715/5  = 7.208730677823430
    # any_severe   : study 1 severe, p = max(.5, .75) = .75, w 4; study 2 not, p = 0 → eps, w 1
    #              = (4·(−ln .75) + 1·(−ln(1−2⁻⁵²))) / 5           ≈ 4·0.2876820724517809/5 = 0.2301456579614247
    # score        = (0.8086717106532695 + 0.5364793041447001 + 7.208730677823430 + 0.2301456579614247) / 4
    #              = 2.196006837645706
    labels, sub = hand_case()
    r = M.score(M.labels_from_train_csv(labels), sub)
    assert r.spinal == pytest.approx(0.8086717106532695, abs=1e-12)
    assert r.foraminal == pytest.approx(0.5364793041447001, abs=1e-12)
    assert r.subarticular == pytest.approx(7.208730677823430, abs=1e-12)
    assert r.any_severe_spinal == pytest.approx(0.2301456579614247, abs=1e-12)
    assert r.score == pytest.approx(2.196006837645706, abs=1e-12)
    assert (r.n_rows, r.n_studies, r.n_ignored) == (7, 2, 3 * 25 - 7)
    assert list(r.to_dict()) == ["spinal", "foraminal", "subarticular", "any_severe_spinal", "score"]
    assert r.to_dict(counts=True)["n_ignored"] == 68


def test_score_files_train_and_solution_agree(tmp_path: Path):
    labels, sub = hand_case()
    labels.to_csv(tmp_path / "train.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    long = M.labels_from_train_csv(labels)
    solution = pd.DataFrame({"row_id": long["row_id"]})
    for s in SEVERITIES:
        solution[s] = (long["severity"] == s).astype(int)
    solution["sample_weight"] = long["severity"].map(SAMPLE_WEIGHTS)
    solution.to_csv(tmp_path / "solution.csv", index=False)
    solution.drop(columns="sample_weight").to_csv(tmp_path / "solution_nw.csv", index=False)
    a = M.score_files(tmp_path / "sub.csv", tmp_path / "train.csv")
    b = M.score_files(tmp_path / "sub.csv", tmp_path / "solution.csv")
    c = M.score_files(tmp_path / "sub.csv", tmp_path / "solution_nw.csv")
    assert a.to_dict(counts=True) == pytest.approx(b.to_dict(counts=True), abs=1e-12)
    assert a.to_dict(counts=True) == pytest.approx(c.to_dict(counts=True), abs=1e-12)
    assert a.score == pytest.approx(2.196006837645706, abs=1e-12)


# ----------------------------------------------------------------------------------- sklearn check


def kaggle_reference(labels: pd.DataFrame, sub: pd.DataFrame) -> dict[str, float]:
    """Kaggle's published scorer, transcribed with sklearn (predictions pre-normalised, as ours are)."""
    sol = labels.copy()
    sol["group"] = sol["condition"].map(GROUP_OF_CONDITION)
    sol["sample_weight"] = sol["severity"].map(SAMPLE_WEIGHTS)
    onehot = np.stack([(sol["severity"] == s).to_numpy(int) for s in SEVERITIES], axis=1)
    pred = sub.set_index("row_id").loc[sol["row_id"], list(SEVERITIES)].to_numpy(float)
    pred = pred / pred.sum(axis=1, keepdims=True)
    out = {}
    for g in CONDITION_GROUPS:
        m = (sol["group"] == g).to_numpy()
        out[g] = log_loss(onehot[m], pred[m], sample_weight=sol["sample_weight"][m])
    m = (sol["group"] == "spinal").to_numpy()
    frame = (
        pd.DataFrame(
            {
                "study": sol["study_id"][m].to_numpy(),
                "y": onehot[m, 2],
                "p": pred[m, 2],
                "w": sol["sample_weight"][m].to_numpy(),
            }
        )
        .groupby("study")
        .max()
    )
    out["any_severe_spinal"] = log_loss(frame["y"], frame["p"], sample_weight=frame["w"], labels=[0, 1])
    out["score"] = float(np.mean(list(out.values())))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_data(seed: int):
    rng = np.random.default_rng(seed)
    studies = [f"{1000 + i}" for i in range(40)] + ["77_a"]  # a study id with an underscore
    grades = {}
    for s in studies:
        picks = rng.choice([*SEVERITY_LABELS.values(), ""], size=len(TARGET_COLUMNS), p=[0.6, 0.2, 0.1, 0.1])
        grades[s] = {c: g for c, g in zip(TARGET_COLUMNS, picks, strict=True) if g}
    labels = M.labels_from_train_csv(train_frame(grades))
    sub = uniform(studies)
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=len(sub)) * rng.uniform(0.1, 10, size=(len(sub), 1))
    probs[rng.random(probs.shape) < 0.05] = 0.0  # exact zeros exercise the clipping
    probs[probs.sum(axis=1) == 0, 0] = 1.0
    sub[list(SEVERITIES)] = probs
    sub = sub.sample(frac=1.0, random_state=seed)  # row order must not matter
    got = M.score(labels, sub).to_dict()
    want = kaggle_reference(labels, sub)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k


# --------------------------------------------------------------------------------- any_severe_spinal


def test_any_severe_spinal_uses_max_prediction_and_max_weight():
    # study A: moderate + normal spinal rows → label 0, weight 2 (the moderate), p = max(.2, .4) = .4
    # study B: one severe among normals     → label 1, weight 4,               p = max(.1, .3) = .3
    labels = M.labels_from_train_csv(
        train_frame(
            {
                "A": {f"{SPINAL}_l1_l2": MOD, f"{SPINAL}_l2_l3": NM, f"{L_FOR}_l1_l2": NM, f"{L_SUB}_l1_l2": NM},
                "B": {f"{SPINAL}_l1_l2": NM, f"{SPINAL}_l4_l5": SEV, f"{L_FOR}_l1_l2": NM, f"{L_SUB}_l1_l2": NM},
            }
        )
    )
    sub = uniform(["A", "B"])
    set_row(sub, row_id("A", SPINAL, "l1_l2"), (0.4, 0.4, 0.2))
    set_row(sub, row_id("A", SPINAL, "l2_l3"), (0.3, 0.3, 0.4))
    set_row(sub, row_id("A", SPINAL, "l3_l4"), (0.0, 0.0, 1.0))  # unlabelled: not in the max
    set_row(sub, row_id("A", L_FOR, "l1_l2"), (0.0, 0.0, 1.0))  # not spinal: not in the max
    set_row(sub, row_id("B", SPINAL, "l1_l2"), (0.9, 0.0, 0.1))
    set_row(sub, row_id("B", SPINAL, "l4_l5"), (0.7, 0.0, 0.3))
    r = M.score(labels, sub)
    assert r.any_severe_spinal == pytest.approx((2 * -math.log(0.6) + 4 * -math.log(0.3)) / 6, abs=1e-12)
    assert r.n_studies == 2


def test_any_severe_spinal_skips_studies_without_graded_spinal_rows():
    labels = M.labels_from_train_csv(
        train_frame(
            {
                "A": {f"{SPINAL}_l1_l2": SEV, f"{L_FOR}_l1_l2": NM, f"{L_SUB}_l1_l2": NM},
                "B": {f"{L_FOR}_l1_l2": NM, f"{L_SUB}_l1_l2": NM},
            }
        )
    )
    sub = uniform(["A", "B"])
    set_row(sub, row_id("B", SPINAL, "l1_l2"), (0.0, 0.0, 1.0))
    r = M.score(labels, sub)
    assert r.n_studies == 1
    assert r.any_severe_spinal == pytest.approx(-math.log(1 / 3), abs=1e-12)


def test_unlabelled_rows_are_not_scored():
    labels, sub = hand_case()
    long = M.labels_from_train_csv(labels)
    base = M.score(long, sub)
    graded = set(long["row_id"])
    changed = sub.copy()
    changed.loc[~changed["row_id"].isin(graded), list(SEVERITIES)] = (0.01, 0.01, 0.98)
    assert M.score(long, changed).to_dict() == base.to_dict()
    only_graded = sub[sub["row_id"].isin(graded)]
    r = M.score(long, only_graded)
    assert r.to_dict() == base.to_dict() and r.n_ignored == 0


# ------------------------------------------------------------------------------------------ baseline


def test_prior_submission_is_weighted_class_frequency():
    labels = M.labels_from_train_csv(
        train_frame(
            {
                "1": {f"{SPINAL}_l1_l2": NM, f"{L_FOR}_l1_l2": NM, f"{L_SUB}_l1_l2": NM},
                "2": {f"{SPINAL}_l1_l2": NM, f"{L_FOR}_l1_l2": MOD, f"{L_SUB}_l1_l2": NM},
                "3": {f"{SPINAL}_l1_l2": SEV, f"{L_FOR}_l1_l2": NM, f"{L_SUB}_l1_l2": NM},
            }
        )
    )
    sub = M.prior_submission(labels)
    assert list(sub.columns) == list(SUBMISSION_COLUMNS)
    assert sub["row_id"].tolist() == row_ids("1") + row_ids("2") + row_ids("3")
    by_id = sub.set_index("row_id")
    # counts (2, 0, 1) × weights (1, 2, 4) = (2, 0, 4) → (1/3, 0, 2/3)
    assert by_id.loc[row_id("2", SPINAL, "l1_l2")].tolist() == pytest.approx([1 / 3, 0, 2 / 3])
    assert by_id.loc[row_id("2", L_FOR, "l1_l2")].tolist() == pytest.approx([0.5, 0.5, 0])
    assert by_id.loc[row_id("1", SPINAL, "l5_s1")].tolist() == pytest.approx([1 / 3] * 3)  # never graded
    unweighted = M.prior_submission(labels, weighted=False).set_index("row_id")
    assert unweighted.loc[row_id("2", SPINAL, "l1_l2")].tolist() == pytest.approx([2 / 3, 0, 1 / 3])
    assert M.prior_submission(labels, study_ids=[9])["row_id"].tolist() == row_ids("9")


# ---------------------------------------------------------------------------------------- bad input


def _write(tmp_path: Path, labels: pd.DataFrame, sub: pd.DataFrame) -> tuple[Path, Path]:
    labels.to_csv(tmp_path / "train.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    return tmp_path / "sub.csv", tmp_path / "train.csv"


# Each edit breaks the hand case (labels, submission) in one way and returns both.
Frames = tuple[pd.DataFrame, pd.DataFrame]


def _set(col: str, index: int, value: object):
    def edit(labels: pd.DataFrame, sub: pd.DataFrame) -> Frames:
        frame = sub if col in sub.columns else labels
        frame[col] = frame[col].astype(object)
        frame.loc[index, col] = value
        return labels, sub

    return edit


def _drop_column(col: str):
    def edit(labels: pd.DataFrame, sub: pd.DataFrame) -> Frames:
        return (labels, sub.drop(columns=[col])) if col in sub.columns else (labels.drop(columns=[col]), sub)

    return edit


def _drop_rows(labels: pd.DataFrame, sub: pd.DataFrame) -> Frames:
    graded = M.labels_from_train_csv(labels)["row_id"]
    return labels, sub[~sub["row_id"].isin(graded[:3])]


def _dup_row(labels: pd.DataFrame, sub: pd.DataFrame) -> Frames:
    return labels, pd.concat([sub, sub.iloc[:1]], ignore_index=True)


def _zero_row(labels: pd.DataFrame, sub: pd.DataFrame) -> Frames:
    sub.loc[4, list(SEVERITIES)] = 0.0
    return labels, sub


def _dup_study(labels: pd.DataFrame, sub: pd.DataFrame) -> Frames:
    return labels.assign(study_id=["1", "1"]), sub


@pytest.mark.parametrize(
    "edit, culprit, message",
    [
        (
            _drop_column("severe"),
            "sub.csv",
            r"missing columns \['severe'\]; expected columns \['row_id', 'normal_mild', 'moderate', 'severe'\]",
        ),
        (
            _drop_column(f"{SPINAL}_l1_l2"),
            "train.csv",
            r"missing columns \['spinal_canal_stenosis_l1_l2'\]; expected columns \['study_id'",
        ),
        (_set("moderate", 3, "abc"), "sub.csv", r"non-numeric moderate in 1 rows .*'abc'"),
        (_set("moderate", 3, np.nan), "sub.csv", r"NaN/blank probabilities in 1 rows \(columns \['moderate'\]\): '1_"),
        (_set("moderate", 3, -0.1), "sub.csv", r"negative probabilities in 1 rows"),
        (_set("moderate", 3, np.inf), "sub.csv", r"infinite probabilities in 1 rows"),
        (
            _dup_row,
            "sub.csv",
            r"duplicated row_id: 1 ids appear more than once \('1_left_neural_foraminal_narrowing_l1_l2'\)",
        ),
        (
            _set("row_id", 30, "3_spinal_canal_stenosis_l6_s1"),
            "sub.csv",
            r"1 malformed row_ids \('3_spinal_canal_stenosis_l6_s1'\)",
        ),
        (
            _set(f"{L_FOR}_l1_l2", 0, "Mild"),
            "train.csv",
            r"unknown severity labels \['Mild'\] \(first at 1/left_neural_foraminal_narrowing_l1_l2\)",
        ),
        (_set(f"{L_FOR}_l1_l2", 0, "NA"), "train.csv", r"unknown severity labels \['NA'\]"),
        (_drop_rows, "sub.csv", r"submission lacks 3 of the 7 labelled row_ids \('1_"),
        (_set("normal_mild", 2, 0.0), "sub.csv", None),  # a zero in one column is fine
        (_zero_row, "sub.csv", r"1 rows have all-zero probabilities \(cannot be normalised\): '1_"),
        (_dup_study, "train.csv", r"duplicated study_id: 1 studies"),
    ],
)
def test_malformed_input_names_file_and_problem(tmp_path: Path, edit, culprit, message):
    pred_csv, labels_csv = _write(tmp_path, *edit(*hand_case()))
    if message is None:
        M.score_files(pred_csv, labels_csv)
        return
    with pytest.raises(ValueError, match=message) as info:
        M.score_files(pred_csv, labels_csv)
    assert str(info.value).startswith(str(tmp_path / culprit) + ": ")


def test_solution_labels_must_be_one_hot(tmp_path: Path):
    pd.DataFrame(
        {
            "row_id": [row_id("1", SPINAL, "l1_l2"), row_id("1", SPINAL, "l2_l3")],
            "normal_mild": [1, 1],
            "moderate": [0, 1],
            "severe": [0, 0],
        }
    ).to_csv(tmp_path / "solution.csv", index=False)
    with pytest.raises(
        ValueError, match=r"solution.csv: 1 label rows are not one-hot .*'1_spinal_canal_stenosis_l2_l3'"
    ):
        M.read_labels(tmp_path / "solution.csv")


def test_unrecognised_label_file(tmp_path: Path):
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ValueError, match=r"x.csv: not a label file: expected train.csv columns \['study_id'"):
        M.read_labels(tmp_path / "x.csv")


def test_group_without_graded_rows_is_an_error():
    labels = M.labels_from_train_csv(train_frame({"1": {f"{SPINAL}_l1_l2": NM}}))
    with pytest.raises(ValueError, match=r"labels grade no foraminal row"):
        M.score(labels, uniform(["1"]))


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_json_contract(tmp_path: Path):
    pred_csv, labels_csv = _write(tmp_path, *hand_case())
    res = runner.invoke(app, ["evaluate", "--pred", str(pred_csv), "--labels", str(labels_csv), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert list(doc) == ["spinal", "foraminal", "subarticular", "any_severe_spinal", "score"]
    assert all(isinstance(v, float) for v in doc.values())
    assert doc["score"] == pytest.approx(2.196006837645706, abs=1e-12)


def test_cli_table(tmp_path: Path):
    pred_csv, labels_csv = _write(tmp_path, *hand_case())
    res = runner.invoke(app, ["evaluate", "--pred", str(pred_csv), "--labels", str(labels_csv)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["spinal", "0.8087"]
    assert lines[4].split() == ["score", "2.1960"]
    assert "68 submission rows not graded" in res.stdout


@pytest.mark.parametrize(
    "pred, message",
    [("missing.csv", "no such file: "), ("bad.csv", "bad.csv: 1 rows have all-zero probabilities")],
)
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, pred: str, message: str):
    labels, sub = hand_case()
    sub.loc[0, list(SEVERITIES)] = 0.0
    sub.to_csv(tmp_path / "bad.csv", index=False)
    labels.to_csv(tmp_path / "train.csv", index=False)
    res = runner.invoke(
        app, ["evaluate", "--pred", str(tmp_path / pred), "--labels", str(tmp_path / "train.csv"), "--json"]
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


# ----------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_labels(shared_data: Path) -> pd.DataFrame:
    return M.read_labels(shared_data / "rsna2024" / "train.csv")


@pytest.mark.real_data
def test_real_labels_counts(real_labels: pd.DataFrame):
    counts = real_labels["severity"].value_counts().to_dict()
    assert counts == {"normal_mild": 37754, "moderate": 7960, "severe": 3089}  # README: 572 blank not kept
    assert real_labels["study_id"].nunique() == 1975


@pytest.mark.real_data
def test_real_prior_and_uniform_acceptance(real_labels: pd.DataFrame):
    prior = M.score(real_labels, M.prior_submission(real_labels, weighted=True))
    assert prior.score == pytest.approx(0.790, abs=0.001)  # measured 0.78971
    assert prior.n_ignored == 572  # the blank targets of train.csv
    flat = M.score(real_labels, M.uniform_submission(real_labels["study_id"].unique()))
    assert flat.score == pytest.approx(0.999, abs=0.001)  # measured 0.99941
    assert flat.spinal == pytest.approx(math.log(3), abs=1e-12)
    unweighted = M.score(real_labels, M.prior_submission(real_labels, weighted=False))
    assert prior.score < unweighted.score < flat.score


@pytest.mark.real_data
def test_real_cli_json(shared_data: Path, real_labels: pd.DataFrame, tmp_path: Path):
    M.prior_submission(real_labels).to_csv(tmp_path / "prior.csv", index=False)
    train_csv = shared_data / "rsna2024" / "train.csv"
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "prior.csv"), "--labels", str(train_csv), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["score"] == pytest.approx(0.790, abs=0.001)
