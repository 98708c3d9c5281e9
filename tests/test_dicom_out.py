"""``write_dicom_outputs``, the per-study hook of ``predict --dicom-out``: files in ``<study>/dicom/``, the SEG
equal to ``segmentation.nii.gz`` voxel for voxel and the SR's findings equal to ``result.json``, on a synthetic
study through the CLI and on the real competition study."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from spine_seg.core.labels import SEG_LABELS
from spine_seg.dicom import load_study
from spine_seg.dicom_out import DICOM_DIR, SEG_FILE, SR_FILE
from spine_seg.dicom_out.seg import label_volume_from_seg
from spine_seg.dicom_out.sr import finding_id, findings_from_sr
from spine_seg.inference.outputs import RESULT_JSON, SEGMENTATION_NII, write_study_outputs
from spine_seg.inference.predictor import Predictor
from spine_seg_cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()
LABEL_MAP = {v: k for k, v in SEG_LABELS.items()}


def check_study_dicom(
    study_dir: Path, series_csv: Path | None = None
) -> tuple[hd.seg.Segmentation, hd.sr.Comprehensive3DSR]:
    """Read a study's SEG and SR back with pydicom and highdicom and check them against its other outputs."""
    doc = json.loads((study_dir / RESULT_JSON).read_text())
    assert (
        doc["outputs"]["dicom_seg"] == f"{DICOM_DIR}/{SEG_FILE}"
        and doc["outputs"]["dicom_sr"] == f"{DICOM_DIR}/{SR_FILE}"
    )
    seg_path, sr_path = study_dir / DICOM_DIR / SEG_FILE, study_dir / DICOM_DIR / SR_FILE
    seg_ds, sr_ds = pydicom.dcmread(seg_path), pydicom.dcmread(sr_path)
    seg, sr = hd.seg.Segmentation.from_dataset(seg_ds), hd.sr.srread(sr_path)
    stack = (
        load_study(doc["folder"], series_csv)
        .get_series(doc["segmentation"]["series_id"])
        .stacks[doc["segmentation"]["stack"]]
    )
    first = pydicom.dcmread(stack.slices[0].path, stop_before_pixels=True)
    for ds in (seg_ds, sr_ds):  # the source's patient and study, new series and instances
        assert ds.PatientID == first.PatientID and ds.StudyInstanceUID == first.StudyInstanceUID
        assert ds.SeriesInstanceUID != first.SeriesInstanceUID and ds.SOPInstanceUID != first.SOPInstanceUID
    assert seg_ds.SeriesInstanceUID != sr_ds.SeriesInstanceUID
    assert seg_ds.FrameOfReferenceUID == first.FrameOfReferenceUID

    uids = [pydicom.dcmread(s.path, stop_before_pixels=True).SOPInstanceUID for s in stack.slices]
    nii = sitk.GetArrayFromImage(sitk.ReadImage(str(study_dir / SEGMENTATION_NII)))
    assert np.array_equal(label_volume_from_seg(seg, uids, LABEL_MAP), nii)

    found = findings_from_sr(sr)
    for level, by_condition in doc["probabilities"].items():
        for condition, probs in by_condition.items():
            f = found[finding_id(condition, level)]
            assert f["probabilities"] == pytest.approx(probs, abs=1e-6)
            assert f["severity"] == max(probs, key=probs.get)
    points = {str(g.tracking_identifier): g.roi.value[0] for g in sr.content.get_planar_roi_measurement_groups()}
    for lm in (doc["landmarks"] or {}).get("levels", []):
        assert np.allclose(points[f"{lm['level']} disc centroid"], lm["disc_xyz_lps_mm"], atol=1e-2)
    refs = {
        r.ReferencedSOPInstanceUID
        for s in sr_ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for r in s.ReferencedSOPSequence
    }
    assert seg_ds.SOPInstanceUID in refs and set(uids) <= refs
    return seg, sr


def test_predict_writes_seg_and_sr_by_default(tiny_bundle, tmp_path):
    csv = tiny_bundle.cohort / "test_series_descriptions.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            str(tiny_bundle.cohort / "test_images"),
            "--model",
            str(tiny_bundle.bundle),
            "--out",
            str(tmp_path),
            "--series-csv",
            str(csv),
            "--device",
            "cpu",
            "--no-progress",
            "--no-report",
        ],
    )
    assert res.exit_code == 0, res.output
    for sid in tiny_bundle.test_ids:
        check_study_dicom(tmp_path / sid, csv)
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left behind"


def test_no_dicom_out(tiny_bundle, tmp_path):
    sid = tiny_bundle.test_ids[0]
    res = runner.invoke(
        app,
        [
            "predict",
            str(tiny_bundle.cohort / "test_images" / sid),
            "--model",
            str(tiny_bundle.bundle),
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--no-progress",
            "--no-report",
            "--no-dicom-out",
        ],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / sid / DICOM_DIR).exists()
    assert set(json.loads((tmp_path / sid / RESULT_JSON).read_text())["outputs"]) == {"segmentation"}


def test_a_failing_dicom_writer_is_a_warning_not_a_failed_study(tiny_bundle, tmp_path, monkeypatch):
    import spine_seg.dicom_out.sr as sr_module

    def broken(*args, **kwargs):
        raise ValueError("no SR today")

    monkeypatch.setattr(sr_module, "build_sr", broken)
    from spine_seg.dicom_out import write_dicom_outputs

    pred = Predictor(tiny_bundle.bundle, device="cpu")
    result, study = pred.predict_with_study(tiny_bundle.cohort / "test_images" / tiny_bundle.test_ids[0])
    write_study_outputs(result, tmp_path, study, report=False, extra_outputs=write_dicom_outputs)
    doc = json.loads((tmp_path / RESULT_JSON).read_text())
    assert any("write_dicom_outputs failed: ValueError: no SR today" in w for w in doc["warnings"])
    assert "dicom_sr" not in doc["outputs"]


@pytest.mark.real_data
def test_real_study_seg_and_sr_validate(tiny_bundle, shared_data, real_study_dir, tmp_path):
    """The competition's study 100206310 (no Modality or SOP Class UID, SOP Instance UIDs repeated across
    series, one frame of reference per series) gives a SEG and an SR that highdicom reads back."""
    csv = shared_data / "rsna2024" / "train_series_descriptions.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            str(real_study_dir),
            "--model",
            str(tiny_bundle.bundle),
            "--out",
            str(tmp_path),
            "--series-csv",
            str(csv),
            "--device",
            "cpu",
            "--no-progress",
            "--no-report",
        ],
    )
    assert res.exit_code == 0, res.output
    seg, sr = check_study_dicom(tmp_path / real_study_dir.name, csv)
    assert seg.PatientID == "100206310" and len(seg.SegmentSequence) == len(SEG_LABELS) - 1
    assert len(findings_from_sr(sr)) == 25
