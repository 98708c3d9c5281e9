"""Landmarks → Sagittal T1 foramina, Axial T2 slice per disc, Sagittal T2 canal: synthetic truth and the real study."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_seg.core.constants import LEVELS, SIDES, SeriesKind, normalize_condition, normalize_level
from spine_seg.dicom import Study, load_study
from spine_seg.landmarks import landmarks_from_labels, landmarks_from_points, load_label_volume
from spine_seg.landmarks.project import StudyProjection, project_landmarks
from spine_seg.synthetic import CohortConfig, generate_cohort


def _coords(csv: Path, study_id: str) -> pd.DataFrame:
    df = pd.read_csv(csv, dtype={"study_id": str, "series_id": str})
    df = df[df.study_id == study_id].copy()
    df["condition"] = df.condition.map(normalize_condition)
    df["level"] = df.level.map(normalize_level)
    return df


def _instance(df: pd.DataFrame, condition: str, level: str) -> int | None:
    rows = df[(df.condition == condition) & (df.level == level)]
    return int(rows.instance_number.iloc[0]) if len(rows) else None


def _plane_x(study: Study, p) -> float:
    """LPS x of the chosen slice where the point's pixel lies: which side of the patient the slice is on."""
    series = study.get_series(p.hit.series_id)
    stack = next(st for st in series.stacks if st.index == p.hit.stack_index)
    return float(stack.slices[p.hit.k].pixel_to_world(p.hit.x_px, p.hit.y_px)[0])


def _without_stacks(study: Study, kind: SeriesKind, keep: slice) -> Study:
    """The study with only some stacks of its series of one kind: a series that stops short."""
    series = tuple(dataclasses.replace(s, stacks=s.stacks[keep]) if s.kind is kind else s for s in study.series)
    return dataclasses.replace(study, series=series)


# --- synthetic: masks → landmarks → projection, against the generator's own keypoints ----------------------


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project_cohort") / "cohort"
    generate_cohort(root, CohortConfig(n_studies=3, seed=1, test_fraction=0.0))
    return root


def test_synthetic_projection_hits_annotated_slices(synthetic: Path):
    overview = pd.read_csv(synthetic / "spider" / "overview.csv", dtype=str)
    foramen_diffs, axial_diffs = [], []
    for row in overview[overview.new_file_name.str.endswith("_t2")].itertuples():
        sid = row.synthetic_study_id
        labels, affine = load_label_volume(synthetic / "spider" / "masks" / f"{row.new_file_name}.mha", spider=True)
        ls = landmarks_from_labels(labels, affine)
        study = load_study(synthetic / "train_images" / sid)
        proj = project_landmarks(ls, study)
        coords = _coords(synthetic / "train_label_coordinates.csv", sid)
        truth = json.loads((synthetic / "truth" / f"{sid}.json").read_text())
        for lm in ls.levels:
            left, right = proj.foramen(lm.level, "left"), proj.foramen(lm.level, "right")
            assert left.reached and right.reached
            assert _plane_x(study, left) > _plane_x(study, right)  # left is +x in LPS
            for side, p in (("left", left), ("right", right)):
                foramen_diffs.append(
                    p.instance_number - _instance(coords, f"{side}_neural_foraminal_narrowing", lm.level)
                )
            ax = proj.axial_at(lm.level)
            if lm.level in truth["axial_levels"]:
                assert ax.reached, (sid, lm.level, ax.to_dict())
                axial_diffs.append(ax.instance_number - _instance(coords, "left_subarticular_stenosis", lm.level))
            assert proj.canal_at(lm.level).reached
        json.dumps(proj.to_dict())
    assert len(foramen_diffs) >= 20 and max(abs(d) for d in foramen_diffs) <= 1, foramen_diffs
    assert len(axial_diffs) >= 10 and max(abs(d) for d in axial_diffs) <= 1, axial_diffs


def test_missing_series_are_reported(tmp_path: Path):
    """Each study of this cohort lacks one series (seed 1: an Axial T2, a Sagittal T1, a Sagittal T2)."""
    root = tmp_path / "cohort"
    result = generate_cohort(
        root, CohortConfig(n_studies=3, seed=1, missing_series_rate=1.0, test_fraction=0.0, spider=False)
    )
    seen = set()
    for sid in result.train_ids:
        truth = json.loads((root / "truth" / f"{sid}.json").read_text())
        lost = SeriesKind(truth["missing_series"])
        seen.add(lost)
        marks = truth["landmarks_lps_mm"]
        ls = landmarks_from_points(
            {lv: marks[lv]["disc_centre"] for lv in LEVELS},
            {lv: marks[lv]["canal_centre"] for lv in LEVELS},
            source="truth",
        )
        proj = project_landmarks(ls, load_study(root / "train_images" / sid))
        assert any(m.startswith(f"{lost.value}: no such series") for m in proj.missing), proj.missing
        assert proj.series_ids[lost.value] == ()
        got = {
            SeriesKind.SAGITTAL_T1: proj.foramina,
            SeriesKind.AXIAL_T2: proj.axial,
            SeriesKind.SAGITTAL_T2: proj.canal,
        }
        for kind, points in got.items():
            assert (len(points) == 0) == (kind is lost)
        assert len(proj.foramina) in (0, 2 * len(LEVELS))
        json.dumps(proj.to_dict())
    assert seen == {SeriesKind.SAGITTAL_T1, SeriesKind.SAGITTAL_T2, SeriesKind.AXIAL_T2}


# --- the real study: landmarks from its spinal keypoints ---------------------------------------------------


@pytest.fixture(scope="module")
def real(real_study_dir: Path, shared_data: Path) -> tuple[Study, pd.DataFrame, StudyProjection]:
    study = load_study(real_study_dir)
    kp = _coords(shared_data / "rsna2024" / "train_label_coordinates.fix01b.csv", study.study_id)
    spinal = kp[kp.condition == "spinal_canal_stenosis"]
    assert sorted(spinal.level) == list(LEVELS)
    points = {
        r.level: study.get_series(r.series_id).pixel_to_world(int(r.instance_number), r.x, r.y)
        for r in spinal.itertuples()
    }
    return study, kp, project_landmarks(landmarks_from_points(points), study)


@pytest.mark.real_data
def test_real_axial_slices_match_subarticular_annotations(real):
    study, kp, proj = real
    assert not proj.missing, proj.missing
    for level in LEVELS:
        ax = proj.axial_at(level)
        assert ax.reached and ax.hit.inside_fov
        for side in SIDES:
            target = _instance(kp, f"{side}_subarticular_stenosis", level)
            assert abs(ax.instance_number - target) <= 1, (level, ax.instance_number, target)
        # in-plane, the canal point lies between the annotated left and right subarticular points
        xs = kp[(kp.level == level) & kp.condition.str.endswith("subarticular_stenosis")].x
        assert xs.min() - 10 < ax.hit.x_px < xs.max() + 10


@pytest.mark.real_data
def test_real_foramina_on_the_correct_side(real):
    study, kp, proj = real
    for level in LEVELS:
        left, right = proj.foramen(level, "left"), proj.foramen(level, "right")
        assert left.reached and right.reached
        assert left.xyz_lps_mm[0] > right.xyz_lps_mm[0] and _plane_x(study, left) > _plane_x(study, right)
        for side, p in (("left", left), ("right", right)):
            target = _instance(kp, f"{side}_neural_foraminal_narrowing", level)
            # the annotated slice's own x agrees in side with ours (left: larger x than the canal's slice)
            assert abs(p.instance_number - target) <= 1, (level, side, p.instance_number, target)
        assert proj.canal_at(level).reached


@pytest.mark.real_data
def test_real_axial_series_that_stops_short_is_flagged(real):
    """Keep only the upper axial blocks: the lower discs are flagged as not reached, the upper ones kept."""
    study, kp, proj = real
    (axial,) = study.series_of_kind(SeriesKind.AXIAL_T2)
    n_keep = len(axial.stacks) - 3
    short = _without_stacks(study, SeriesKind.AXIAL_T2, slice(0, n_keep))
    ls = landmarks_from_points({lv: proj.canal_at(lv).xyz_lps_mm for lv in LEVELS})
    cut = project_landmarks(ls, short)
    kept = {s.instance_number for st in short.get_series(axial.series_id).stacks for s in st.slices}
    reached = cut.axial_levels_reached
    assert 0 < len(reached) < len(LEVELS)
    for level in LEVELS:
        p = cut.axial_at(level)
        target = _instance(kp, "left_subarticular_stenosis", level)
        if target in kept:
            assert p.reached, (level, p.to_dict())
        else:
            assert not p.reached and any(
                m.startswith(f"Axial T2 {level}") and "does not reach" in m for m in cut.missing
            )
    json.dumps(cut.to_dict())


def test_bad_arguments_are_named(synthetic: Path):
    ls = landmarks_from_points({"l4_l5": (0.0, 60.0, -500.0)})
    study = load_study(next((synthetic / "train_images").iterdir()))
    with pytest.raises(ValueError, match="tolerance_mm"):
        project_landmarks(ls, study, tolerance_mm=-1)
    proj = project_landmarks(ls, study)
    with pytest.raises(ValueError, match="unknown side"):
        proj.foramen("l4_l5", "middle")
    with pytest.raises(ValueError, match="unknown level"):
        proj.axial_at("L4/L5")
    assert proj.foramen("l1_l2", "left") is None
    assert sum(m.startswith("l1_l2: no landmark") for m in proj.missing) == 1
    assert np.isfinite(proj.foramen("l4_l5", "left").hit.x_px)
