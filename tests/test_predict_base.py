"""``spineseg predict`` / ``predict_study`` with no grading bundle, on the real study: the shipped base model's
levels, measurements and measured grades, written as result.json, report.png, SEG and SR, and no competition
rows made up (issue #24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine_seg.core.constants import LEVELS

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


@pytest.fixture(scope="module")
def base_result(real_study_dir: Path, shared_data: Path):
    from spine_seg.inference.predictor import Predictor

    pred = Predictor(None, device="cpu")
    csv = shared_data / "rsna2024" / "train_series_descriptions.csv"
    return pred.predict_with_study(real_study_dir, csv)


def test_the_real_study_is_measured_and_its_severe_level_is_the_narrowest(base_result, shared_data: Path):
    import pandas as pd

    from spine_seg.report.measures import narrowest_level

    result, _ = base_result
    assert not result.has_rows and result.submission is None
    assert result.landmarks is not None and result.landmarks.found_levels == LEVELS
    truth = pd.read_csv(shared_data / "rsna2024" / "train.csv", dtype=str).set_index("study_id").loc["100206310"]
    assert truth["spinal_canal_stenosis_l4_l5"] == "Severe"
    assert narrowest_level(result.measurements) == "l4_l5"
    l45 = result.measured_grade("spinal_canal_stenosis", "l4_l5")
    assert l45 is not None and l45.grade == "severe"
    for level in LEVELS:  # every level measured on its mid-sagittal plane, in mm
        site = result.measurements.level(level)
        assert site.value("canal_ap_mm") is not None and 5.0 < site.value("canal_ap_mm") < 25.0
        assert 2.0 < site.value("disc_height_middle_mm") < 16.0
    axial = result.measurements.level("l4_l5").values["dural_sac_csa_axial_mm2"]  # says why, never a number
    assert not axial.valid and "no segmentation of the Axial T2" in (axial.reason or "")
    with pytest.raises(Exception, match="no competition rows"):
        result.probabilities("spinal_canal_stenosis", "l4_l5")


def test_its_result_json_says_no_rows_were_produced_and_holds_the_measurements(base_result):
    result, _ = base_result
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["competition_rows"] is False and doc["rows"] == [] and doc["probabilities"] is None
    assert doc["format_version"] == 2 and doc["bundle"]["name"] == "spineseg-base-model"
    assert doc["bundle"]["grading"] is None
    m = doc["measurements"]["levels"]["l4_l5"]["csf_ap_mm"]
    assert m["unit"] == "mm" and m["valid"] is True
    g = doc["measured_grades"]["l4_l5"]["spinal_canal_stenosis"]
    assert g["grade"] == "severe" and abs(sum(g["probabilities"].values()) - 1.0) < 1e-3
    assert any("competition rows were not produced" in f for f in doc["fallbacks"])


def test_the_cli_writes_no_submission_and_says_so(real_study_dir: Path, shared_data: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from spine_seg_cli.main import app

    out = tmp_path / "out"
    csv = shared_data / "rsna2024" / "train_series_descriptions.csv"
    res = CliRunner().invoke(
        app, ["predict", str(real_study_dir), "--out", str(out), "--series-csv", str(csv), "--no-progress", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{") :])
    assert doc["competition_rows"] is False and doc["submission"] is None and doc["done"] == 1
    assert not (out / "submission.csv").exists()
    study = out / "100206310"
    for name in ("result.json", "report.png", "segmentation.nii.gz", "dicom/seg.dcm", "dicom/sr.dcm"):
        assert (study / name).is_file(), name
    _validate_with_dciodvfy(study / "dicom" / "sr.dcm")
    _validate_with_dciodvfy(study / "dicom" / "seg.dcm")
    again = CliRunner().invoke(
        app, ["predict", str(real_study_dir), "--out", str(out), "--series-csv", str(csv), "--no-progress"]
    )
    assert again.exit_code == 0 and "1 already done" in again.stdout and "not produced" in again.stdout


def test_the_report_marks_l4_l5_narrowest_and_shows_measured_grades(base_result):
    from spine_seg.report.canvas import _Context, _Slices
    from spine_seg.report.figure import render_report
    from spine_seg.report.measures import measured_grade_texts, measurement_rows

    result, study = base_result
    fig = render_report(study, result)
    profile = next(ax for ax in fig.get_axes() if ax.get_title(loc="left").startswith("Spinal canal AP diameter"))
    notes = [t.get_text() for t in profile.texts]
    assert "narrowest: L4/L5 0.0 mm" in notes, notes
    assert {"L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"} <= set(notes)  # every level marked on the curve
    texts = measured_grade_texts(_Context(study, result, _Slices(study)))
    assert texts[("spinal_canal_stenosis", "l4_l5")] == "Severe"
    assert texts[("spinal_canal_stenosis", "l3_l4")] == "Moderate"  # the readers' grade of this level too
    rows = measurement_rows(result.measurements, result.measured_grades)
    assert [r[0] for r in rows] == ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
    assert rows[3][2] == "0.0"  # the CSF diameter at L4/L5
    assert rows[3][-1].startswith("Sev · ") and rows[2][-1].startswith("Mod · ")  # measured grades beside
    grade_panel = [t.get_text() for ax in fig.get_axes() for t in ax.texts if "Measured grades" in t.get_text()]
    assert grade_panel and "competition rows were not produced" in grade_panel[0]


def _validate_with_dciodvfy(path: Path) -> None:
    """dicom3tools' validator finds no error of ours. Its only complaint is the competition's own anonymised UIDs
    (``100206310.1.9``: no registered root), which the SEG and SR must carry to reference the source images."""
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools)")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    ours = [e for e in errors if not (e.startswith('Error - Illegal root for UID - "100206310'))]
    assert not ours, ours
