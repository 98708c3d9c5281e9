"""Comprehensive 3D SR: landmarks as SCOORD3D points in the T2's frame of reference, segment volumes that
reference the SEG, and 25 coded findings whose severity and probabilities equal result.json's."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from highdicom.sr import GraphicTypeValues3D
from pydicom.uid import Comprehensive3DSRStorage
from test_pipeline import TrueMaskSegmenter

from spine_seg import __version__
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
from spine_seg.dicom import load_study
from spine_seg.dicom_out import codes
from spine_seg.dicom_out.seg import build_seg
from spine_seg.dicom_out.sources import read_sources
from spine_seg.dicom_out.sr import _unambiguous, build_sr, finding_id, findings_from_sr
from spine_seg.inference.predictor import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predicted(tiny_bundle, tmp_path_factory):
    """A synthetic study predicted on its true mask (so that every level has landmarks), its SEG and SR."""
    pred = Predictor(tiny_bundle.bundle, device="cpu")
    pred.seg_model = TrueMaskSegmenter(tiny_bundle.cohort)
    sid = tiny_bundle.train_ids[0]
    csv = tiny_bundle.cohort / "train_series_descriptions.csv"
    result, study = pred.predict_with_study(tiny_bundle.cohort / "train_images" / sid, csv)
    info = result.segmentation_stack
    stack = study.get_series(info["series_id"]).stacks[info["stack"]]
    sources = read_sources(s.path for s in stack.slices)
    seg = build_seg(
        result.segmentation.labels, result.segmentation.label_names, sources, version=__version__, bundle_name="tiny"
    )
    out = tmp_path_factory.mktemp("sr")
    seg.save_as(out / "seg.dcm", enforce_file_format=True)
    seg_ds = pydicom.dcmread(out / "seg.dcm")
    sr = build_sr(result, sources, seg_ds, version=__version__, bundle_name="tiny")
    sr.save_as(out / "sr.dcm", enforce_file_format=True)
    return result, sources, seg_ds, out / "sr.dcm"


def test_sr_reads_back_as_a_tid1500_measurement_report(predicted):
    result, sources, seg, path = predicted
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == Comprehensive3DSRStorage and ds.Modality == "SR"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.PatientID == sources[0].PatientID and ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.SeriesInstanceUID not in {sources[0].SeriesInstanceUID, seg.SeriesInstanceUID}
    evidence = {
        s.SeriesInstanceUID: {r.ReferencedSOPInstanceUID for r in s.ReferencedSOPSequence}
        for s in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    }
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}
    assert evidence[sources[0].SeriesInstanceUID] >= {s.SOPInstanceUID for s in sources}
    assert isinstance(hd.sr.srread(path), hd.sr.Comprehensive3DSR)


def test_landmarks_are_scoord3d_points_in_the_t2_frame_of_reference(predicted):
    result, sources, _, path = predicted
    content = hd.sr.srread(path).content
    groups = content.get_planar_roi_measurement_groups(graphic_type=GraphicTypeValues3D.POINT)
    by_id = {str(g.tracking_identifier): g for g in groups}
    assert len(result.landmarks.levels) == 5 and len(groups) == 10
    for lm in result.landmarks.levels:
        for kind, xyz in ((codes.DISC_POINT, lm.disc_xyz), (codes.CANAL_POINT, lm.canal_xyz)):
            g = by_id[f"{lm.level} {kind}"]
            assert g.reference_type == pydicom.sr.codedict.codes.DCM.ImageRegion
            region = g.roi
            assert region.frame_of_reference_uid == sources[0].FrameOfReferenceUID
            assert np.allclose(region.value, np.asarray(xyz).reshape(1, 3), atol=1e-3)
            (conf,) = g.get_measurements(name=codes.LANDMARK_CONFIDENCE)
            assert conf.value == pytest.approx(lm.confidence, abs=1e-6)


def test_segment_volumes_reference_the_seg(predicted):
    result, _, seg, path = predicted
    groups = hd.sr.srread(path).content.get_volumetric_roi_measurement_groups()
    counts = result.segmentation.voxel_counts()
    voxel = float(np.prod(result.segmentation.spacing_mm))
    assert len(groups) == len([n for n in counts if n != "background"])
    for g in groups:
        ref = g.roi if g.roi is not None else g.referenced_segment
        segment = g.referenced_segment
        assert segment is not None and ref is not None
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        name = str(g.tracking_identifier).removeprefix("segment ")
        (vol,) = g.get_measurements(name=codes.VOLUME)
        assert vol.value == pytest.approx(counts[name] * voxel, rel=1e-6)


def test_findings_equal_the_result(predicted):
    result, _, _, path = predicted
    found = findings_from_sr(hd.sr.srread(path))
    assert len(found) == 25
    for c in CONDITIONS:
        for lv in LEVELS:
            f = found[finding_id(c, lv)]
            p = result.probabilities(c, lv)
            assert [f["probabilities"][s] for s in SEVERITIES] == pytest.approx(list(p), abs=1e-9)
            assert f["severity"] == result.grade(c, lv)
            source = result.sources[f"{result.study_id}_{c}_{lv}"]
            assert f["source"] == codes.ROW_SOURCE_CODES[source].meaning
    group = hd.sr.srread(path).content.get_image_measurement_groups(tracking_uid=None)[
        CONDITIONS.index("left_neural_foraminal_narrowing") * 5
    ]
    sites = {(s.value.value, s.value.scheme_designator) for s in group.finding_sites}
    assert (codes.LEVEL_SITE["l1_l2"].value, "SCT") in sites
    assert group.finding_type.value == codes.FINDING_TYPE.value


def test_ambiguous_crop_images_are_not_cited(tmp_path):
    from conftest import make_study

    study = load_study(make_study(tmp_path))
    t1, t2 = (read_sources([s.get_series(x).stacks[0].slices[0].path])[0] for s, x in ((study, "11"), (study, "12")))
    axial = read_sources([study.get_series("13").stacks[-1].slices[-1].path])[0]
    # the competition's quirk: T1 instance n and T2 instance n share one SOP Instance UID
    assert t1.SOPInstanceUID == t2.SOPInstanceUID
    cited = _unambiguous([t2], {"row_t1": t1, "row_t2": t2, "row_axial": axial})
    assert set(cited) == {"row_t2"} | ({"row_axial"} if axial.SOPInstanceUID != t2.SOPInstanceUID else set())


def test_measurements_are_numeric_items_with_ucum_units(predicted):
    from spine_seg.dicom_out.sr import measurement_id, measurements_from_sr

    result, _, _, path = predicted
    found = measurements_from_sr(hd.sr.srread(path))
    ms = result.measurements
    assert ms is not None and ms.levels
    for site in ms.levels:
        items = found[measurement_id(site.site)]
        valid = {k: m for k, m in site.values.items() if m.valid}
        assert valid, site.site
        for name, m in valid.items():
            value, unit = items[codes.MEASUREMENT_CODES[name].meaning]
            assert value == pytest.approx(m.value, abs=1e-6) and unit == codes.UNIT_CODES[m.unit].value
        for name, m in site.values.items():  # an invalid measurement carries no number
            if not m.valid:
                assert codes.MEASUREMENT_CODES[name].meaning not in items
        for g in result.measured_grades:
            if g.site == site.site and g.grade is not None:
                assert items[codes.MEASURED_GRADE_CODES[g.finding].meaning][1] == (
                    codes.MEASURED_CLASS_CODES[g.grade].meaning
                )


def test_an_sr_without_competition_rows_holds_no_findings_but_the_measurements(predicted, tmp_path):
    import dataclasses

    from spine_seg.dicom_out.sr import measurements_from_sr

    result, sources, seg, _ = predicted
    bare = dataclasses.replace(result, submission=None, sources={}, crops={})
    build_sr(bare, sources, seg, version=__version__, bundle_name="spineseg-base-model").save_as(
        tmp_path / "sr.dcm", enforce_file_format=True
    )
    sr = hd.sr.srread(tmp_path / "sr.dcm")
    assert findings_from_sr(sr) == {}
    assert set(measurements_from_sr(sr)) >= {f"measurements {lv}" for lv in LEVELS}
