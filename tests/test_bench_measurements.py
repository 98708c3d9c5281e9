"""The measurement benchmark's scoring (benchmarks/bench_measurements.py): its AUC, the geometry it gives
SPIDER's PNG slices, and the mask-against-mask comparison, which must score zero error (so that a figure it
reports is the prediction's, not the benchmark's own)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_measurements")
    finally:
        sys.path.remove(str(BENCH))


def test_auc_is_mann_whitney_with_ties_half(bench):
    assert bench.auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert bench.auc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert bench.auc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert bench.auc([1, 2], [1, 1]) is None


def test_a_spider_png_is_placed_superior_up_and_anterior_first(bench):
    from spine_seg.core import geometry

    aff = bench.slice_affine(0.5, 0.6, 3.0)
    top_front = geometry.voxel_to_world(aff, [0, 0, 0])
    below = geometry.voxel_to_world(aff, [0, 10, 0])  # row 10: 5 mm further down (LPS z falls)
    behind = geometry.voxel_to_world(aff, [10, 0, 0])  # column 10: 6 mm further back (LPS y rises)
    assert below[2] - top_front[2] == pytest.approx(-5.0) and behind[1] - top_front[1] == pytest.approx(6.0)


@pytest.mark.real_data
def test_a_mask_measured_against_itself_scores_zero(bench, shared_data: Path):
    patient = shared_data / "spider_t2space" / "5"
    name = sorted((patient / "image").glob("*.png"))[len(list((patient / "image").glob("*.png"))) // 2].name
    image = bench.read_png(patient / "image" / name)[None].astype(np.float32)
    mask = bench.read_png(patient / "mask" / name)[None]
    assert set(np.unique(mask).tolist()) <= {0, *bench.SPIDER_PNG_LABELS}
    aff = bench.slice_affine(0.469, 0.469, 0.9)
    lv = bench.mask_volume(mask, aff)
    ls, ms, _ = bench.measure(lv, image)
    ls2, ms2, _ = bench.measure(bench.mask_volume(mask, aff), image)
    pairs = bench._match(ls, ls2)
    assert len(pairs) >= 4 and all(a == b for a, b in pairs.items())
    for a, b in pairs.items():
        for k in bench.COMPARED:
            assert ms.level(a).value(k) == ms2.level(b).value(k)
    # the mask's discs are measured: heights of a real lumbar disc
    heights = [ms.level(a).value("disc_height_middle_mm") for a in pairs]
    assert all(h is not None and 3.0 < h < 16.0 for h in heights), heights
