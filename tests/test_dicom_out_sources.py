"""Completing source headers for the SEG/SR: the competition's missing attributes are filled in on copies,
what the file has is kept."""

from __future__ import annotations

import pydicom
from conftest import make_study

from spine_seg.dicom_out.sources import MR_IMAGE_STORAGE, complete_header, read_sources


def test_missing_attributes_are_filled_on_copies_only(tmp_path):
    path = sorted((make_study(tmp_path) / "12").glob("*.dcm"))[0]
    raw = pydicom.dcmread(path, stop_before_pixels=True)
    assert "SOPClassUID" not in raw and "Modality" not in raw  # the competition's quirks, reproduced
    (ds,) = read_sources([path])
    assert ds.SOPClassUID == MR_IMAGE_STORAGE and ds.Modality == "MR"
    assert "PatientName" in ds and not ds.PatientName and not ds.StudyDate and "AccessionNumber" in ds
    assert ds.PatientID == raw.PatientID and ds.StudyInstanceUID == raw.StudyInstanceUID
    assert ds.FrameOfReferenceUID == raw.FrameOfReferenceUID
    assert "SOPClassUID" not in pydicom.dcmread(path, stop_before_pixels=True), "the source file must not change"


def test_present_attributes_are_kept_and_a_missing_frame_of_reference_is_derived_per_series(tmp_path):
    path = sorted((make_study(tmp_path) / "12").glob("*.dcm"))[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.Modality, ds.PatientName = "MR", "Doe^Jane"
    del ds.FrameOfReferenceUID
    filled = complete_header(ds)
    assert ds.PatientName == "Doe^Jane" and "PatientName" not in filled and "Modality" not in filled
    other = pydicom.dcmread(path, stop_before_pixels=True)
    del other.FrameOfReferenceUID
    complete_header(other)
    assert ds.FrameOfReferenceUID == other.FrameOfReferenceUID and "FrameOfReferenceUID" in filled
