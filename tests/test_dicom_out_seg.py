"""DICOM SEG from a label volume: segments from the label map it carries (spineseg's or the generic one),
read back with pydicom and highdicom voxel for voxel, on source files with the competition's quirks."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import make_study

from spine_seg.core.labels import SEG_LABELS
from spine_seg.dicom import load_study
from spine_seg.dicom_out import codes
from spine_seg.dicom_out.seg import build_seg, label_volume_from_seg, segment_table
from spine_seg.dicom_out.sources import MR_IMAGE_STORAGE, read_sources

SPINESEG_MAP = {v: k for k, v in SEG_LABELS.items()}
GENERIC_MAP = {0: "background", 1: "vertebra", 2: "sacrum", 3: "disc", 4: "spinal_canal"}


@pytest.fixture()
def t2_sources(tmp_path):
    study = load_study(make_study(tmp_path))
    stack = max(study.series, key=lambda s: s.series_id == "12").stacks[0]
    return stack, read_sources(s.path for s in stack.slices)


def _random_labels(shape, values, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    for v in values:
        k, j, i = (int(rng.integers(0, s)) for s in shape)
        labels[k, max(0, j - 4) : j + 4, max(0, i - 3) : i + 3] = v
    return labels


@pytest.mark.parametrize("label_map", [SPINESEG_MAP, GENERIC_MAP], ids=["spineseg", "generic"])
def test_seg_round_trip_voxel_for_voxel(t2_sources, tmp_path, label_map):
    stack, sources = t2_sources
    values = [v for v in label_map if v][:-1]  # the last label stays empty: its segment is still described
    labels = _random_labels(stack.shape, values)
    seg = build_seg(labels, label_map, sources, version="9.9", bundle_name="tiny")
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)

    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID and ds.PatientID == sources[0].PatientID
    assert ds.SeriesInstanceUID != sources[0].SeriesInstanceUID and ds.SOPInstanceUID not in {
        s.SOPInstanceUID for s in sources
    }
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    refs = ds.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {r.ReferencedSOPClassUID for r in refs.ReferencedInstanceSequence} == {MR_IMAGE_STORAGE}

    back = hd.seg.segread(path)
    names = [d.SegmentLabel for d in back.SegmentSequence]
    assert names == [label_map[v] for v in sorted(label_map) if v]
    for d in back.SegmentSequence:
        assert d.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.structure_code(d.SegmentLabel).value
        algo = d.SegmentationAlgorithmIdentificationSequence[0]
        assert (
            algo.AlgorithmName == "spineseg" and algo.AlgorithmVersion == "9.9" and "tiny" in algo.AlgorithmParameters
        )
    restored = label_volume_from_seg(back, [s.SOPInstanceUID for s in sources], label_map)
    assert np.array_equal(restored, labels)


def test_segment_numbers_are_consecutive_whatever_the_label_values(t2_sources, tmp_path):
    stack, sources = t2_sources
    label_map = {0: "background", 3: "disc", 7: "vertebra"}
    labels = _random_labels(stack.shape, [3, 7, 9])  # 9: not in the map
    assert segment_table(label_map, labels) == [(1, 3, "disc"), (2, 7, "vertebra"), (3, 9, "label_9")]
    seg = build_seg(labels, label_map, sources, version="1", bundle_name="b")
    seg.save_as(tmp_path / "s.dcm")
    back = hd.seg.segread(tmp_path / "s.dcm")
    assert np.array_equal(label_volume_from_seg(back, [s.SOPInstanceUID for s in sources], label_map), labels)


def test_every_spineseg_and_generic_structure_has_a_standard_or_named_code():
    for name in [*SEG_LABELS, *GENERIC_MAP.values()]:
        if name == "background":
            continue
        code = codes.structure_code(name)
        assert code.scheme_designator in ("SCT", codes.PRIVATE_SCHEME)
        if name != "disc":  # no generic intervertebral-disc concept in DICOM's SNOMED subset
            assert code.scheme_designator == "SCT", name
    assert codes.structure_code("L4").value == "11994002" and codes.structure_code("disc_l4_l5").value == "84020006"
    assert codes.structure_code("spinal_canal").value == "61853006"


def test_shape_mismatch_is_refused(t2_sources):
    stack, sources = t2_sources
    with pytest.raises(ValueError, match="does not match"):
        build_seg(np.zeros((2, 3, 4), np.uint8), SPINESEG_MAP, sources, version="1", bundle_name="b")
