"""spine_seg.measurements: numbers per level on hand-built columns whose true values are known by
construction, the invalid flags with their reasons, and the measured grades' rules."""

from __future__ import annotations

import numpy as np
import pytest

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import BASE_LABELS

NAMES = {v: k for k, v in BASE_LABELS.items()}
V, S, D, C = BASE_LABELS["vertebra"], BASE_LABELS["sacrum"], BASE_LABELS["disc"], BASE_LABELS["spinal_canal"]
#: 0.5 mm voxels: [k, j, i] with k → patient left, j → feet, i → posterior.
AFFINE = np.array([[0.0, 0.0, 0.5, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, -0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
BODY, DISC, TOP = 25.0, 10.0, 20.0  # mm
CANAL_FRONT, CANAL_AP, BODY_FRONT, BODY_AP = 58.0, 15.0, 20.0, 35.0


def _mm(v: float) -> int:
    return int(round(v / 0.5))


def column(
    narrow_l4_l5_mm: float | None = None,
    csf_l3_l4_mm: float | None = None,
    slip_l5_mm: float = 0.0,
    n_slices: int = 40,
    rows_mm: float = 250.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Five bodies, five discs and a sacrum, a 15 mm canal behind them (a tube 12 mm wide), and a T2-like
    image: CSF 1000, discs 500, bone 300. ``narrow_l4_l5_mm``: the canal label's AP diameter over the L4/L5
    disc; ``csf_l3_l4_mm``: how much of the canal is bright over L3/L4 (the rest dark as nerve roots);
    ``slip_l5_mm``: L5 moved forward on the sacrum."""
    shape = (n_slices, _mm(rows_mm), _mm(100.0))
    labels = np.zeros(shape, np.uint8)
    image = np.full(shape, 50.0, np.float32)
    k0, k1 = n_slices // 2 - _mm(6.0), n_slices // 2 + _mm(6.0)
    labels[k0:k1, _mm(TOP - 15) :, _mm(CANAL_FRONT) : _mm(CANAL_FRONT + CANAL_AP)] = C
    j = TOP
    for n, level in enumerate(LEVELS):
        shift = slip_l5_mm if n == 4 else 0.0
        a, b = _mm(BODY_FRONT - shift), _mm(BODY_FRONT + BODY_AP - shift)
        labels[:, _mm(j) : _mm(j + BODY), a:b] = V
        labels[:, _mm(j + BODY) : _mm(j + BODY + DISC), _mm(BODY_FRONT) : _mm(BODY_FRONT + BODY_AP)] = D
        if level == "l4_l5" and narrow_l4_l5_mm is not None:
            rows = slice(_mm(j + BODY), _mm(j + BODY + DISC))
            labels[k0:k1, rows, _mm(CANAL_FRONT + narrow_l4_l5_mm) : _mm(CANAL_FRONT + CANAL_AP)] = 0
        j += BODY + DISC
    labels[:, _mm(j) : _mm(j + 40), _mm(BODY_FRONT) : _mm(BODY_FRONT + BODY_AP)] = S
    image[labels == C] = 1000.0
    image[labels == D] = 500.0
    image[(labels == V) | (labels == S)] = 300.0
    if csf_l3_l4_mm is not None:
        j = TOP + 2 * (BODY + DISC)
        rows = slice(_mm(j + BODY), _mm(j + BODY + DISC))
        dark = np.zeros(shape, bool)
        dark[:, rows, _mm(CANAL_FRONT + csf_l3_l4_mm) :] = True
        image[dark & (labels == C)] = 120.0
    return labels, image


def measure(labels: np.ndarray, image: np.ndarray | None = None, affine: np.ndarray = AFFINE):
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.measurements import measure_spine
    from spine_seg.segmentation.predict import LabelVolume

    lv = LabelVolume(labels, affine, NAMES)
    ls = landmarks_from_label_volume(lv)
    assert ls.found_levels == LEVELS, ls.missing
    return measure_spine(lv, ls, image)


@pytest.fixture(scope="module")
def healthy():
    labels, image = column()
    return measure(labels, image)


def test_canal_and_disc_numbers_are_the_constructed_ones(healthy):
    for level in LEVELS:
        site = healthy.level(level)
        assert site.value("canal_ap_mm") == pytest.approx(CANAL_AP, abs=0.5), level
        assert site.value("csf_ap_mm") == pytest.approx(CANAL_AP, abs=0.5), level
        assert site.value("csf_fraction") == pytest.approx(1.0, abs=0.04)
        for where in ("anterior", "middle", "posterior"):
            assert site.value(f"disc_height_{where}_mm") == pytest.approx(DISC, abs=0.5), (level, where)
        assert site.value("listhesis_mm") == pytest.approx(0.0, abs=0.5)
        assert site.value("disc_csf_signal_ratio") == pytest.approx(0.5, abs=0.03)
        # the tube is 12 mm wide and 15 mm deep, read on the disc plane from 0.5 mm sagittal slices
        assert site.value("canal_csa_mm2") == pytest.approx(12.0 * 15.0, rel=0.08)
    for name in ("L2", "L3", "L4"):
        body = healthy.vertebra(name)
        assert body.value("body_height_middle_mm") == pytest.approx(BODY, abs=0.5)
        assert body.value("canal_ap_mm") == pytest.approx(CANAL_AP, abs=0.5)
    lvl = healthy.level("l2_l3")
    assert lvl.value("disc_height_index") == pytest.approx(DISC / BODY, abs=0.03)
    assert lvl.value("canal_ap_ratio") == pytest.approx(1.0, abs=0.05)
    # a straight column: both endplates and both discs parallel
    assert healthy.spine["disc_angle_l1_l2_to_l5_s1_deg"].value == pytest.approx(0.0, abs=2.0)
    assert healthy.spine["lordosis_l1_s1_deg"].value == pytest.approx(0.0, abs=2.0)


def test_every_measurement_says_where_it_was_taken(healthy):
    from spine_seg.core import geometry

    ap = healthy.level("l3_l4").values["canal_ap_mm"]
    (a, b) = (np.asarray(p) for p in ap.points_lps_mm)
    assert np.linalg.norm(a - b) == pytest.approx(ap.value, abs=0.6)
    i_a, i_b = geometry.world_to_voxel(AFFINE, a)[0], geometry.world_to_voxel(AFFINE, b)[0]
    assert min(i_a, i_b) * 0.5 == pytest.approx(CANAL_FRONT, abs=0.6)  # starts at the canal's front wall
    assert ap.slice_k is not None and abs(ap.slice_k - 20) <= 2  # on the mid-sagittal slice


def test_a_narrowed_canal_label_and_squeezed_csf_are_graded():
    from spine_seg.measurements.grades import measured_grades

    labels, image = column(narrow_l4_l5_mm=4.0, csf_l3_l4_mm=3.0)
    ms = measure(labels, image)
    l45, l34 = ms.level("l4_l5"), ms.level("l3_l4")
    assert l45.value("canal_ap_mm") == pytest.approx(4.0, abs=0.5)
    assert l45.value("canal_ap_ratio") == pytest.approx(4.0 / CANAL_AP, abs=0.05)
    assert l34.value("canal_ap_mm") == pytest.approx(CANAL_AP, abs=0.5)
    assert l34.value("csf_ap_mm") == pytest.approx(3.0, abs=0.5)
    grades = {g.site: g.grade for g in measured_grades(ms) if g.finding == "spinal_canal_stenosis"}
    assert grades == {
        "l1_l2": "normal_mild",
        "l2_l3": "normal_mild",
        "l3_l4": "moderate",
        "l4_l5": "severe",
        "l5_s1": "normal_mild",
    }


def test_csf_gone_at_the_disc_reads_as_obliterated_not_missing():
    labels, image = column(narrow_l4_l5_mm=0.0)
    site = measure(labels, image).level("l4_l5")
    m = site.values["canal_ap_mm"]
    assert m.valid and m.value == 0.0 and "obliterated" in (m.reason or "")


def test_a_slipped_vertebra_is_measured_in_mm_and_percent():
    from spine_seg.measurements.grades import listhesis_grade

    ms = measure(*column(slip_l5_mm=9.0))
    site = ms.level("l5_s1")
    assert site.value("listhesis_mm") == pytest.approx(9.0, abs=0.6)
    assert site.value("listhesis_percent") == pytest.approx(100 * 9.0 / BODY_AP, abs=2.0)
    assert ms.level("l4_l5").value("listhesis_mm") == pytest.approx(-9.0, abs=0.6)  # L4 sits back on L5
    assert listhesis_grade(site).grade == "grade_2"  # 26 %: Meyerding II
    assert listhesis_grade(ms.level("l2_l3")).grade == "none"


def test_a_structure_cut_by_the_field_of_view_is_invalid_with_its_reason():
    labels, image = column()
    cut = 40  # rows: the image starts 20 mm down, in the middle of L1
    ms = measure(labels[:, cut:], image[:, cut:], AFFINE)
    l1 = ms.vertebra("L1")
    m = l1.values["body_height_middle_mm"]
    assert not m.valid and m.value is None and "off the image" in (m.reason or "")
    assert not ms.spine["lordosis_l1_s1_deg"].valid
    assert ms.level("l2_l3").value("disc_height_middle_mm") == pytest.approx(DISC, abs=0.5)  # the rest still counts


def test_no_canal_label_is_invalid_never_a_number():
    labels, image = column()
    labels[labels == C] = 0
    ms = measure(labels, image)
    for level in LEVELS:
        m = ms.level(level).values["canal_ap_mm"]
        assert not m.valid and m.value is None and "no canal label" in (m.reason or "")
        assert not ms.level(level).values["csf_fraction"].valid


def test_a_single_2d_slice_measures_in_plane_and_refuses_the_cross_section():
    labels, image = column(n_slices=1)
    affine = AFFINE.copy()
    affine[:3, 2] = [3.0, 0.0, 0.0]  # one 3 mm slice
    ms = measure(labels, image, affine)
    site = ms.level("l3_l4")
    assert site.value("canal_ap_mm") == pytest.approx(CANAL_AP, abs=0.5)
    assert site.value("disc_height_middle_mm") == pytest.approx(DISC, abs=0.5)
    csa = site.values["canal_csa_mm2"]
    assert not csa.valid and "1 sagittal slice" in (csa.reason or "")


def test_without_csf_contrast_the_csf_reading_says_why():
    labels, image = column()
    image[labels == C] = 100.0  # T1-like: CSF darker than marrow
    site = measure(labels, image).level("l3_l4")
    m = site.values["csf_ap_mm"]
    assert not m.valid and "not a T2-weighted image" in (m.reason or "")
    assert site.value("canal_ap_mm") == pytest.approx(CANAL_AP, abs=0.5)


def test_profile_marks_each_level_and_finds_the_narrowest():
    from spine_seg.report.measures import narrowest_level, narrowest_points

    ms = measure(*column(narrow_l4_l5_mm=5.0))
    assert set(ms.profile.level_s_mm) == set(LEVELS)
    assert list(ms.profile.level_s_mm.values()) == sorted(ms.profile.level_s_mm.values())
    assert narrowest_level(ms) == "l4_l5"
    assert narrowest_points(ms)["l4_l5"][1] == pytest.approx(5.0, abs=0.6)


def test_measurement_json_roundtrips_units_and_reasons(healthy):
    import json

    doc = json.loads(json.dumps(healthy.to_dict()))
    m = doc["levels"]["l4_l5"]["canal_ap_mm"]
    assert m["unit"] == "mm" and m["valid"] is True and m["value"] == pytest.approx(CANAL_AP, abs=0.5)
    assert doc["spine"]["lordosis_l1_s1_deg"]["unit"] == "deg"
    assert len(doc["canal_profile"]["s_mm"]) == len(doc["canal_profile"]["ap_mm"])


def test_measurement_type_refuses_a_silent_invalid():
    from spine_seg.measurements import Measurement

    with pytest.raises(ValueError, match="needs its reason"):
        Measurement("canal_ap_mm", None, "mm", valid=False)
    with pytest.raises(ValueError, match="valid:"):
        Measurement("canal_ap_mm", 1.0, "inch")


def test_ordinal_probabilities_are_soft_monotone_and_sum_to_one():
    from spine_seg.measurements.grades import RULES, ordinal_probabilities

    r = RULES["canal_ap_ratio"]
    values = np.linspace(0.0, 1.2, 61)
    severe = [ordinal_probabilities(v, r.thresholds, r.width, r.rising)[2] for v in values]
    assert all(abs(sum(ordinal_probabilities(v, r.thresholds, r.width, r.rising)) - 1) < 1e-9 for v in values)
    assert all(a >= b for a, b in zip(severe, severe[1:], strict=False))  # narrower → more severe
    on = ordinal_probabilities(r.thresholds[1], r.thresholds, r.width, r.rising)
    assert on[2] == pytest.approx(0.5)  # on the threshold: an honest 50/50


def test_structure_classes_read_both_label_maps():
    from spine_seg.core.labels import SEG_LABELS
    from spine_seg.measurements import structure_classes

    seg = np.array([[[SEG_LABELS["L3"], SEG_LABELS["disc_l4_l5"], SEG_LABELS["spinal_canal"], SEG_LABELS["sacrum"]]]])
    out = structure_classes(seg, {v: k for k, v in SEG_LABELS.items()})
    assert out.tolist() == [[[V, D, C, S]]]


def test_a_canal_label_that_ends_at_a_level_is_not_a_narrowing_there():
    labels, image = column()
    l1_l2 = TOP + BODY + DISC / 2  # mm down to the L1/L2 disc's middle
    top = labels[:, : _mm(l1_l2 - 3.0)]
    top[top == C] = 0  # the canal label starts 3 mm above the disc's middle: present there, ending near it
    ms = measure(labels, image)
    m = ms.level("l1_l2").values["canal_ap_mm"]
    assert not m.valid and "ends within" in (m.reason or "")
    assert ms.level("l2_l3").value("canal_ap_mm") == pytest.approx(CANAL_AP, abs=0.5)


def test_every_measurement_has_an_sr_concept_and_a_ucum_unit(healthy):
    from spine_seg.dicom_out import codes

    found = {(k, m.unit) for s in (*healthy.levels, *healthy.vertebrae) for k, m in s.values.items()}
    found |= {(k, m.unit) for k, m in healthy.spine.items()}
    assert {k for k, _ in found} <= set(codes.MEASUREMENT_CODES)
    assert {u for _, u in found} <= set(codes.UNIT_CODES)
