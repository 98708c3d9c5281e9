from __future__ import annotations

import pandas as pd
import pytest

from spine_seg.core import constants as C


def test_vocabulary_is_the_competitions():
    assert C.CONDITIONS[0] == "spinal_canal_stenosis"
    assert C.LEVELS == ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
    assert C.SEVERITIES == ("normal_mild", "moderate", "severe")
    assert [C.SAMPLE_WEIGHTS[s] for s in C.SEVERITIES] == [1, 2, 4]
    assert C.SUBMISSION_COLUMNS == ("row_id", "normal_mild", "moderate", "severe")
    assert len(C.TARGET_COLUMNS) == 25
    assert C.SIDE_OF_CONDITION["right_subarticular_stenosis"] == "right"
    assert C.SIDE_OF_CONDITION["spinal_canal_stenosis"] is None


def test_both_keypoint_spellings():
    assert C.normalize_condition("Spinal Canal Stenosis") == "spinal_canal_stenosis"
    assert C.normalize_condition("left_neural_foraminal_narrowing") == "left_neural_foraminal_narrowing"
    assert C.normalize_level("L4/L5") == "l4_l5"
    assert C.normalize_level("l5_s1") == "l5_s1"
    assert C.normalize_severity("Normal/Mild") == "normal_mild"


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"valid: \['l1_l2'"):
        C.normalize_level("L6/S1")
    with pytest.raises(ValueError, match="spinal_canal_stenosis"):
        C.normalize_condition("canal")
    with pytest.raises(ValueError, match="Sagittal T1"):
        C.SeriesKind.parse("Coronal T1")


def test_row_ids_roundtrip():
    rid = C.row_id(4003253, "spinal_canal_stenosis", "l4_l5")
    assert rid == "4003253_spinal_canal_stenosis_l4_l5"
    assert C.parse_row_id(rid) == ("4003253", "spinal_canal_stenosis", "l4_l5")
    assert C.parse_row_id("my_study_left_subarticular_stenosis_l1_l2") == (
        "my_study",
        "left_subarticular_stenosis",
        "l1_l2",
    )
    with pytest.raises(ValueError, match="malformed row_id"):
        C.parse_row_id("4003253_spinal_l4_l5")


def test_matches_real_csvs(shared_data):
    sub = pd.read_csv(shared_data / "rsna2024" / "sample_submission.csv")
    assert tuple(sub.columns) == C.SUBMISSION_COLUMNS
    assert list(sub.row_id) == C.row_ids(44036939)
    train = pd.read_csv(shared_data / "rsna2024" / "train.csv", nrows=2)
    assert tuple(train.columns[1:]) == C.TARGET_COLUMNS
    kinds = pd.read_csv(shared_data / "rsna2024" / "train_series_descriptions.csv").series_description.unique()
    assert {C.SeriesKind.parse(k) for k in kinds} == {
        C.SeriesKind.SAGITTAL_T1,
        C.SeriesKind.SAGITTAL_T2,
        C.SeriesKind.AXIAL_T2,
    }
