"""The API on the real competition study: ingestion quirks and the cross-reference acceptance check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_seg import api
from spine_seg.core.constants import LEVELS, SeriesKind, normalize_condition, normalize_level
from spine_seg.dicom import load_study

pytestmark = pytest.mark.real_data


def _keypoints(shared_data: Path, study_id: str) -> pd.DataFrame:
    df = pd.read_csv(
        shared_data / "rsna2024" / "train_label_coordinates.fix01b.csv", dtype={"study_id": str, "series_id": str}
    )
    df = df[df.study_id == study_id].copy()
    df["condition"] = df.condition.map(normalize_condition)
    df["level"] = df.level.map(normalize_level)
    return df


def test_real_study_ingestion(real_study_dir: Path, shared_data: Path):
    study = load_study(real_study_dir)
    assert study.study_id == "100206310"
    kinds = {s.series_id: s.kind for s in study.series}
    # headers alone (orientation + 'T1'/'T2' description) agree with the competition's CSV
    csv = pd.read_csv(shared_data / "rsna2024" / "train_series_descriptions.csv", dtype=str)
    truth = {r.series_id: SeriesKind.parse(r.series_description) for r in csv[csv.study_id == "100206310"].itertuples()}
    assert kinds == truth
    t1, t2, ax = (
        study.series_of_kind(k)[0] for k in (SeriesKind.SAGITTAL_T1, SeriesKind.SAGITTAL_T2, SeriesKind.AXIAL_T2)
    )
    assert (t1.n_slices, t2.n_slices, ax.n_slices) == (18, 18, 60)
    assert t1.stacks[0].shape == (18, 512, 512) and t2.stacks[0].shape == (18, 462, 448)
    assert len(ax.stacks) >= 6  # one oblique block per disc, plus a split where the spacing jumps
    assert t2.stacks[0].spacing_mm[0] == pytest.approx(0.5357, abs=1e-3)
    vol = t2.stacks[0].load()  # RLE Lossless, decoded by plain pydicom
    assert vol.shape == (18, 462, 448) and vol.dtype == np.float32 and vol.max() > 100


def test_spinal_keypoints_land_on_annotated_axial_slices(real_study_dir: Path, shared_data: Path):
    """Acceptance: each spinal keypoint (Sagittal T2) → Axial T2 within ±1 of the subarticular slice."""
    kp = _keypoints(shared_data, "100206310")
    studies = api.inspect_studies(real_study_dir)
    spinal = kp[kp.condition == "spinal_canal_stenosis"].set_index("level")
    sub = kp[kp.condition == "left_subarticular_stenosis"].set_index("level")
    assert list(spinal.index) == list(LEVELS)
    for level in LEVELS:
        row = spinal.loc[level]
        result = api.locate(studies, row.series_id, int(row.instance_number), row.x, row.y)
        (axial,) = [t for t in result.targets if t.kind == SeriesKind.AXIAL_T2.value]
        target = int(sub.loc[level].instance_number)
        assert abs(axial.hit.instance_number - target) <= 1, (level, axial.hit.instance_number, target)
        assert abs(axial.hit.distance_mm) < 3.5 and axial.hit.inside_fov
        # in-plane, the canal point lies between the annotated left and right subarticular points
        right = kp[(kp.condition == "right_subarticular_stenosis") & (kp.level == level)].x.item()
        assert min(right, sub.loc[level].x) - 10 < axial.hit.x_px < max(right, sub.loc[level].x) + 10


def test_foraminal_points_are_lateral_to_the_canal(real_study_dir: Path, shared_data: Path):
    """Left foraminal keypoints lie to the patient's left (+x in LPS) of the canal, right ones to the right."""
    kp = _keypoints(shared_data, "100206310")
    study = load_study(real_study_dir)
    for level in LEVELS:
        canal = kp[(kp.condition == "spinal_canal_stenosis") & (kp.level == level)].iloc[0]
        x_canal = study.get_series(canal.series_id).pixel_to_world(int(canal.instance_number), canal.x, canal.y)[0]
        for side, sign in (("left", 1), ("right", -1)):
            r = kp[(kp.condition == f"{side}_neural_foraminal_narrowing") & (kp.level == level)].iloc[0]
            x = study.get_series(r.series_id).pixel_to_world(int(r.instance_number), r.x, r.y)[0]
            assert sign * (x - x_canal) > 10, (level, side)
