from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_seg.core import geometry
from spine_seg.dicom import SliceInfo, Stack, load_study
from spine_seg.grading import crops as C
from spine_seg.synthetic import CohortConfig, generate_cohort

IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # sagittal


def make_stack(px: float, n: int = 5, size_mm: float = 120.0, spacing: float = 4.0) -> Stack:
    m = int(round(size_mm / px))
    normal = geometry.slice_normal(IOP)
    slices = tuple(
        SliceInfo(
            Path(f"/nonexistent/{k}.dcm"),
            k + 1,
            tuple(np.array([0.0, -60.0, 60.0]) + k * spacing * normal),
            IOP,
            (px, px),
            m,
            m,
        )
        for k in range(n)
    )
    return Stack("1", "2", 0, slices)


def paint_disc(stack: Stack, centre: np.ndarray, radius_mm: float) -> np.ndarray:
    """A volume with a bright disc of ``radius_mm`` around ``centre`` on every slice."""
    k, j, i = np.indices(stack.shape)
    xyz = geometry.voxel_to_world(stack.affine, np.stack([i, j, k], axis=-1))
    d = xyz - centre
    inplane = d - np.einsum("...c,c->...", d, stack.normal)[..., None] * stack.normal
    return (np.linalg.norm(inplane, axis=-1) <= radius_mm).astype(np.float32)


def test_crop_is_centred_on_its_world_point():
    stack = make_stack(px=0.7)
    centre = geometry.voxel_to_world(stack.affine, (70.3, 90.8, 2))
    vol = paint_disc(stack, centre, 3.0)
    crop = C.crop_stack(vol, stack, centre, C.CropSpec(fov_mm=20, size_px=41, n_slices=3))
    assert crop.pixels.shape == (3, 41, 41)
    w = crop.pixels[1]
    jj, ii = np.indices(w.shape)
    centroid = (float((w * jj).sum() / w.sum()), float((w * ii).sum() / w.sum()))
    assert centroid == pytest.approx((20.0, 20.0), abs=0.35)  # 0.17 mm: the source disc is rasterised at 0.7 mm
    assert crop.k_centre == 2 and abs(crop.distance_mm) < 1e-6


def test_field_of_view_in_mm_holds_across_spacings():
    spec = C.CropSpec(fov_mm=40, size_px=64, n_slices=1)
    crops = []
    for px in (0.5, 0.9):
        stack = make_stack(px=px)
        centre = geometry.voxel_to_world(stack.affine, (60 / px, 55 / px, 2))
        crops.append(C.crop_stack(paint_disc(stack, centre, 10.0), stack, centre, spec).pixels[0])
    # a 10 mm radius fills the same share of a 40 mm crop whatever the pixel size
    areas = [float((c > 0.5).mean()) for c in crops]
    assert areas[0] == pytest.approx(np.pi * 10**2 / 40**2, rel=0.06)
    assert areas[0] == pytest.approx(areas[1], rel=0.06)
    assert np.corrcoef(crops[0].ravel(), crops[1].ravel())[0, 1] > 0.9


def test_slices_are_neighbours_and_clipped_at_the_edge():
    stack = make_stack(px=1.0, n=4)
    vol = np.broadcast_to(np.arange(4, dtype=np.float32)[:, None, None], stack.shape).copy()
    centre = geometry.voxel_to_world(stack.affine, (50, 50, 0))
    crop = C.crop_stack(vol, stack, centre, C.CropSpec(fov_mm=10, size_px=8, n_slices=5, slice_step=1))
    assert [float(c[4, 4]) for c in crop.pixels] == [0, 0, 0, 1, 2]


def test_right_side_is_mirrored_and_recorded():
    stack = make_stack(px=1.0)
    centre = geometry.voxel_to_world(stack.affine, (60, 60, 2))
    vol = paint_disc(stack, geometry.voxel_to_world(stack.affine, (66, 60, 2)), 2.0)  # blob to the right in i
    plain = C.crop_stack(vol, stack, centre, C.CropSpec(fov_mm=30, size_px=31, n_slices=1))
    flipped = C.crop_stack(vol, stack, centre, C.CropSpec(fov_mm=30, size_px=31, n_slices=1), flip=True)
    assert flipped.flipped and not plain.flipped
    np.testing.assert_array_equal(flipped.pixels, plain.pixels[:, :, ::-1])


def test_invalid_spec_is_refused():
    with pytest.raises(ValueError, match="invalid crop spec"):
        C.CropSpec(fov_mm=0)


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crops") / "c"
    generate_cohort(out, CohortConfig(n_studies=2, seed=21, test_fraction=0, spider=False))
    return out


def test_keypoint_crops_and_cache(tiny_cohort: Path, tmp_path: Path, monkeypatch):
    kp = C.read_keypoints(tiny_cohort / "train_label_coordinates.csv")
    study_id = kp.study_id.iloc[0]
    study = load_study(tiny_cohort / "train_images" / study_id)
    cache = C.CropCache(tmp_path / "cache")
    first = cache.get(study, kp)
    n_points = int((kp.study_id == study_id).sum())
    assert len(first) == n_points and all(a.shape == (3, 96, 96) for a in first.values())
    records = cache.manifest[study_id]["records"]
    assert {r["flipped"] for r in records if r["condition"].startswith("right")} == {True}

    def boom(*a, **k):
        raise AssertionError("recomputed although nothing changed")

    monkeypatch.setattr(C, "keypoint_crops", boom)
    again = C.CropCache(tmp_path / "cache").get(study, kp)
    assert set(again) == set(first)
    np.testing.assert_allclose(again[next(iter(again))], first[next(iter(first))], atol=1e-3)
    # a moved keypoint invalidates the cached crops
    moved = kp.copy()
    moved.loc[moved.study_id == study_id, "x"] += 3
    with pytest.raises(AssertionError, match="recomputed"):
        C.CropCache(tmp_path / "cache").get(study, moved)


def test_read_keypoints_both_spellings(tmp_path: Path):
    p = tmp_path / "k.csv"
    pd.DataFrame(
        [
            {
                "study_id": 1,
                "series_id": 2,
                "instance_number": 3,
                "condition": "Spinal Canal Stenosis",
                "level": "L4/L5",
                "x": 1,
                "y": 2,
            }
        ]
    ).to_csv(p, index=False)
    df = C.read_keypoints(p)
    assert (df.condition.item(), df.level.item()) == ("spinal_canal_stenosis", "l4_l5")
    pd.DataFrame([{"study_id": 1}]).to_csv(p, index=False)
    with pytest.raises(ValueError, match="k.csv: keypoint CSV lacks columns"):
        C.read_keypoints(p)
