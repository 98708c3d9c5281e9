"""plan_crops: where each crop is cut and which rows fall back, decided without a model or a DICOM file."""

from __future__ import annotations

import numpy as np
import pytest

from spine_seg.core.constants import LEVELS, SeriesKind
from spine_seg.dicom import SliceHit
from spine_seg.inference.crop_plan import AXIAL_MIN_CONFIDENCE, CropPlan, plan_crops, spinal_point
from spine_seg.landmarks import LandmarkSet, LevelLandmark, disc_frame
from spine_seg.landmarks.project import ProjectedPoint, StudyProjection

SPECS = {"spinal": object(), "foraminal": object(), "subarticular": object()}


def _level(level: str, z: float, confidence: float = 1.0) -> LevelLandmark:
    return LevelLandmark(level, (0.0, 0.0, z), (0.0, 0.0, 1.0), (0.0, 20.0, z), "canal_label", confidence=confidence)


def _point(level: str, target: str, kind: SeriesKind, series: str, distance: float = 0.0, inside: bool = True):
    hit = SliceHit(series, 0, 3, 4, 10.0, 10.0, distance, inside)
    return ProjectedPoint(level, target, kind, (0.0, 0.0, 0.0), hit, distance, 4.0, 2.0)


def _projection(levels, *, t1: bool = True, axial_distance: float = 0.0) -> StudyProjection:
    foramina = (
        tuple(_point(lv, f"{s}_foramen", SeriesKind.SAGITTAL_T1, "t1") for lv in levels for s in ("left", "right"))
        if t1
        else ()
    )
    axial = tuple(_point(lv, "canal", SeriesKind.AXIAL_T2, "ax", axial_distance) for lv in levels)
    series = {SeriesKind.SAGITTAL_T1.value: ("t1",) if t1 else (), SeriesKind.AXIAL_T2.value: ("ax",)}
    return StudyProjection("1", foramina, axial, (), (), (), series)


def _landmarks(confidence: float = 1.0, unsure: bool = False) -> LandmarkSet:
    levels = tuple(_level(lv, -40.0 * i, confidence) for i, lv in enumerate(LEVELS))
    return LandmarkSet(levels, (), (), unsure, "sacrum")


def test_every_row_gets_a_crop_when_all_series_reach_every_level():
    plan = plan_crops(_landmarks(), _projection(LEVELS), SPECS, "t2")
    assert isinstance(plan, CropPlan) and plan.fallbacks == () and not plan.axial_fallback
    assert len(plan.crops) == 25 and len({(c.condition, c.level) for c in plan.crops}) == 25
    first = plan.crops[0]
    assert (first.condition, first.series_id, first.flip) == ("spinal_canal_stenosis", "t2", False)
    assert np.allclose(first.xyz_lps_mm, spinal_point((0, 0, 0), (0, 20, 0)))
    assert {c.series_id for c in plan.crops if "foraminal" in c.condition} == {"t1"}
    assert {c.series_id for c in plan.crops if "subarticular" in c.condition} == {"ax"}
    assert all(c.flip == c.condition.startswith("right") for c in plan.crops)


def test_axial_not_reached_or_unsure_goes_to_the_axial_fallback():
    plan = plan_crops(_landmarks(), _projection(LEVELS, axial_distance=9.0), SPECS)
    assert set(plan.axial_fallback) == set(LEVELS) and len(plan.crops) == 15
    assert plan.fallbacks[0] == "l1_l2 subarticular: the Axial T2 does not reach it (nearest slice 9.0 mm away)"
    plan = plan_crops(_landmarks(unsure=True), _projection(LEVELS), SPECS)
    assert plan.fallbacks[0] == "l1_l2 subarticular: level names unsure"
    low = AXIAL_MIN_CONFIDENCE / 2
    plan = plan_crops(_landmarks(confidence=low), _projection(LEVELS), SPECS)
    assert plan.fallbacks[0] == f"l1_l2 subarticular: landmark confidence {low:.2f} < {AXIAL_MIN_CONFIDENCE}"
    assert np.allclose(plan.axial_fallback["l1_l2"], (0.0, 20.0, 0.0))


def test_no_sagittal_t1_and_missing_specs():
    plan = plan_crops(_landmarks(), _projection(LEVELS, t1=False), SPECS)
    assert plan.fallbacks == ("no Sagittal T1 series: foraminal rows from the training prior",)
    assert not [c for c in plan.crops if "foraminal" in c.condition]
    plan = plan_crops(_landmarks(), _projection(LEVELS), {"spinal": object()})
    assert {c.condition for c in plan.crops} == {"spinal_canal_stenosis"}


@pytest.mark.parametrize("distance, reached", [(0.0, True), (30.0, False)])
def test_foramen_outside_the_sagittal_t1(distance: float, reached: bool):
    proj = _projection(LEVELS)
    far = tuple(
        ProjectedPoint(p.level, p.target, p.kind, p.xyz_lps_mm, p.hit, distance, 4.0, 2.0)
        if p.level == "l4_l5" and p.target == "left_foramen"
        else p
        for p in proj.foramina
    )
    proj = StudyProjection("1", far, proj.axial, (), (), (), proj.series_ids)
    plan = plan_crops(_landmarks(), proj, SPECS)
    assert (len(plan.crops) == 25) is reached
    if not reached:
        assert plan.fallbacks == (
            "l4_l5 left foramen outside the Sagittal T1 (30.0 mm from the nearest slice): "
            "left_neural_foraminal_narrowing from the training prior",
        )


def test_the_spinal_crop_sits_on_the_canal_points_sagittal_plane():
    # a disc centroid 4 mm to the patient's left of the canal point, which lies on the study's midline
    disc, canal, tilted = np.array([4.0, 0.0, -10.0]), np.array([0.0, 20.0, -12.0]), np.array([0.0, 0.2, 1.0])
    assert np.allclose(spinal_point(disc, canal), [2.0, 10.0, -11.0])  # without the normal: half-way
    point = spinal_point(disc, canal, normal_lps=tilted)
    _, post, left = disc_frame(tilted)
    assert np.dot(point - canal, left) == pytest.approx(0.0, abs=1e-9)  # on the canal's sagittal plane
    halfway = spinal_point(disc, canal)
    assert np.dot(point - halfway, post) == pytest.approx(0.0, abs=1e-9)  # only moved left–right
    level = LevelLandmark("l4_l5", tuple(disc), (0.0, 0.0, 1.0), tuple(canal), "canal_label")
    plan = plan_crops(LandmarkSet((level,), (), (), False, "sacrum"), _projection(["l4_l5"]), SPECS, "t2")
    spinal = next(c for c in plan.crops if c.condition == "spinal_canal_stenosis")
    assert np.allclose(spinal.xyz_lps_mm, [0.0, 10.0, -11.0])
