"""The real-data landmark benchmark's scoring (benchmarks/bench_real_landmarks.py), checked on the truth itself.

The GT masks of 2 VB2 and 2 MyoSegmenTUM volumes, given as the "prediction", must score every level found and
named right with disc points about 1 mm from the truth (the landmark code's disc point is the midpoint between
facing endplates, the truth's the midpoint of the body centroids: they differ by ≈ 1 mm, measured 0.5–2.5 mm
over all 36 volumes). Deliberately wrong predictions (names one level off; bodies moved 25 mm) must score as
wrong, so the benchmark cannot flatter a model.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_real_landmarks")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def cases(bench, shared_data: Path) -> list:
    return [
        *bench.load_vb2(shared_data / "vb2", limit=2),
        *bench.load_myosegmentum(shared_data / "myosegmentum", limit=2),
    ]


def test_truth_names_by_order_not_by_label(bench, cases) -> None:
    vb2 = cases[0]
    assert vb2.case_id == "vb2_02"
    # 02.mat: label 7 is the highest body, so it is T11 whatever its number
    assert vb2.body_names[7] == "T11" and len(vb2.body_names) == 7
    assert set(vb2.truth) == {"t11_t12", "t12_l1", "l1_l2", "l2_l3", "l3_l4", "l4_l5"}
    myo = cases[2]
    assert myo.case_id == "myo_01" and myo.body_names == {1: "L1", 2: "L2", 3: "L3", 4: "L4", 5: "L5"}
    for case in cases:  # superior first: z falls along the levels
        z = [case.truth[lv][2] for lv in bench.SCORED_LEVELS]
        assert all(a > b for a, b in zip(z, z[1:], strict=False))
        gaps = np.linalg.norm(np.diff([case.truth[lv] for lv in bench.SCORED_LEVELS], axis=0), axis=1)
        assert np.all((gaps > 28) & (gaps < 48)), gaps  # ≈ 1 mm voxels: adult lumbar pitch


def test_truth_masks_score_perfectly(bench, cases) -> None:
    errors = []
    for case in cases:
        rec = bench.run_case(case, None)
        assert rec["summary"]["total"] == 4
        assert rec["summary"]["found"] == 4 and rec["summary"]["named_right"] == 4, rec["levels"]
        assert rec["body_dice"] == pytest.approx(1.0)
        errors += [v["error_mm"] for v in rec["levels"].values()]
        # the landmark code's body centroids are the truth's centroids: the geometry (affine, naming) agrees
        ls = bench.landmarks_of(bench.truth_label_volume(case))
        _, cents = bench.names_by_order(case.gt, case.affine)
        for lm in ls.levels:
            upper, lower = (n.upper() for n in lm.level.split("_"))
            assert np.linalg.norm(np.asarray(lm.upper_vertebra_xyz_lps_mm) - cents[upper]) < 0.6
            assert np.linalg.norm(np.asarray(lm.lower_vertebra_xyz_lps_mm) - cents[lower]) < 0.6
    assert len(errors) == 16
    assert float(np.median(errors)) < 1.2, errors
    assert max(errors) < 2.0, errors


def _relabelled(bench, case, mapping: dict[int, int], shift_rows: int = 0):
    from spine_seg.segmentation.predict import LabelVolume

    lv = bench.truth_label_volume(case)
    table = np.arange(256, dtype=np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    labels = table[lv.labels]
    if shift_rows:  # rows (axis j) run inferior: move every body shift_rows voxels down
        labels = np.roll(labels, shift_rows, axis=1)
        labels[:, :shift_rows] = 0
    return LabelVolume(labels, lv.affine, lv.label_names)


def test_names_one_level_off_score_wrong(bench, cases) -> None:
    for case in cases:
        # L2 called "L1", …, L5 called "L4"; L1 dropped: every disc is named one level too high
        lv = _relabelled(bench, case, {1: 0, 2: 1, 3: 2, 4: 3, 5: 4})
        rec = bench.score_prediction(case, lv, "test")
        assert rec["summary"]["named_right"] == 0, rec["levels"]
        assert rec["summary"]["found"] >= 3  # the discs are where they should be, under the wrong names
        named = [v["error_mm"] for v in rec["levels"].values() if v["error_mm"] is not None]
        assert named and min(named) > 25.0  # a crop placed by name misses by about a disc spacing
        assert all(not p["right"] for p in rec["predicted"])


def test_shifted_bodies_score_wrong(bench, cases) -> None:
    for case in cases[:2]:
        rec = bench.score_prediction(case, _relabelled(bench, case, {}, shift_rows=25), "test")
        assert rec["summary"]["named_right"] == 0
        errs = [v["error_mm"] for v in rec["levels"].values() if v["error_mm"] is not None]
        assert errs and min(errs) > 20.0


def test_score_points_definitions(bench) -> None:
    truth = {lv: np.array([0.0, 0.0, -40.0 * i]) for i, lv in enumerate(bench.SCORED_LEVELS)}
    pred = {
        "l1_l2": (np.array([0.0, 3.0, 0.0]), 0.9),  # right, 3 mm
        "l2_l3": (np.array([0.0, 0.0, -80.0]), 0.9),  # sits on the truth l3_l4, named l2_l3
        "l4_l5": (np.array([0.0, 0.0, -150.0]), 0.5),  # 30 mm off: beyond half a spacing (20 mm)
    }
    res = bench.score_points(pred, truth, bench.SCORED_LEVELS)
    lv = res["levels"]
    assert res["half_spacing_mm"] == 20.0
    assert lv["l1_l2"] == {**lv["l1_l2"], "found": True, "named_right": True, "error_mm": 3.0, "confidence": 0.9}
    assert lv["l2_l3"]["found"] is False and lv["l2_l3"]["error_mm"] == 40.0
    assert lv["l3_l4"]["found"] is True and lv["l3_l4"]["named_right"] is False and lv["l3_l4"]["error_mm"] is None
    assert lv["l4_l5"]["found"] is False and lv["l4_l5"]["error_mm"] == 30.0
    right = {p["level"]: p["right"] for p in res["predicted"]}
    assert right == {"l1_l2": True, "l2_l3": False, "l4_l5": False}
