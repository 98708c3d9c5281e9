"""Structure labels → level names by counting (spine_seg.landmarks.structures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_seg.core.constants import LEVELS
from spine_seg.core.geometry import world_to_voxel
from spine_seg.core.labels import BASE_LABELS, DISC_BELOW, SEG_DISC_OF_LEVEL, spider_disc_label
from spine_seg.landmarks import landmarks_from_labels, load_label_volume
from spine_seg.landmarks.structures import _xyz, landmarks_from_label_volume, seg_labels_from_base
from spine_seg.segmentation.predict import LabelVolume
from spine_seg.synthetic import CohortConfig, generate_cohort
from spine_seg.synthetic.randomise import base_labels_from_spider


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("structures") / "cohort"
    generate_cohort(root, CohortConfig(n_studies=3, seed=31, test_fraction=0.0))
    return root


def _cases(root: Path):
    overview = pd.read_csv(root / "spider" / "overview.csv", dtype=str)
    for row in overview[overview.new_file_name.str.endswith("_t2")].itertuples():
        spider, affine = load_label_volume(root / "spider" / "masks" / f"{row.new_file_name}.mha")
        truth = json.loads((root / "truth" / f"{row.synthetic_study_id}.json").read_text())
        yield spider, affine, truth


def _base(spider: np.ndarray) -> np.ndarray:
    return base_labels_from_spider(spider.astype(np.int64))


def test_counting_names_every_level_like_the_level_labels(cohort: Path):
    n = 0
    for spider, affine, truth in _cases(cohort):
        base = _base(spider)
        ls = landmarks_from_label_volume(LabelVolume(base, affine, {v: k for k, v in BASE_LABELS.items()}))
        assert ls.anchor == "sacrum" and not ls.unsure
        assert ls.found_levels == LEVELS
        for lm in ls.levels:
            err = float(np.linalg.norm(lm.disc_xyz - np.asarray(truth["landmarks_lps_mm"][lm.level]["disc_centre"])))
            assert err < 3.0, (lm.level, err)
            assert lm.confidence >= 0.8
        n += 1
    assert n == 3


def test_without_sacrum_names_are_unsure(cohort: Path):
    spider, affine, _ = next(_cases(cohort))
    base = _base(spider)
    base[base == BASE_LABELS["sacrum"]] = 0
    ls = landmarks_from_labels(seg_labels_from_base(base, affine), affine)
    assert ls.unsure
    assert all(lm.confidence < 0.8 for lm in ls.levels)


def _with_full_t12_l1_disc(spider: np.ndarray, affine: np.ndarray, truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """Base labels with a whole T12/L1 disc: the phantom's own (often cut by the field of view) removed, and the
    L1/L2 disc copied, same size and shape, to halfway between the true T12 and L1 centres. Returns the labels
    and the new disc's mask."""
    base = _base(spider)
    base[spider == spider_disc_label("T12")] = BASE_LABELS["background"]
    centres = truth["vertebra_centres_lps_mm"]
    target = (np.asarray(centres["T12"], dtype=float) + np.asarray(centres["L1"], dtype=float)) / 2
    l1_l2 = np.argwhere(spider == spider_disc_label("L1"))
    shift_ijk = world_to_voxel(affine, target) - world_to_voxel(affine, _xyz(l1_l2, affine).mean(axis=0))
    moved = l1_l2 + np.rint(shift_ijk[::-1]).astype(int)
    inside = np.all((moved >= 0) & (moved < np.array(base.shape)), axis=1)
    assert inside.mean() > 0.95, "the copied disc left the field of view"
    added = np.zeros(base.shape, dtype=bool)
    added[tuple(moved[inside].T)] = True
    added &= base != BASE_LABELS["spinal_canal"]
    base[added] = BASE_LABELS["disc"]
    return base, added


def test_extra_thoracic_disc_is_not_named_lumbar(cohort: Path):
    """A whole T12/L1 disc above L1/L2 must not push the names up: counting starts at the sacrum. Each lumbar
    disc name lands on exactly that disc's voxels, and the T12/L1 disc gets no name, so names shifted one level
    (L1/L2 on the thoracic disc, … L4/L5 on L5/S1) fail here."""
    n = 0
    for spider, affine, truth in _cases(cohort):
        base, added = _with_full_t12_l1_disc(spider, affine, truth)
        assert added.sum() >= 0.9 * (spider == spider_disc_label("L1")).sum()  # a real disc, not a sliver
        relabelled = seg_labels_from_base(base, affine)
        for upper, level in DISC_BELOW.items():
            if level not in LEVELS:
                continue
            named = relabelled == SEG_DISC_OF_LEVEL[level]
            np.testing.assert_array_equal(named, spider == spider_disc_label(upper), err_msg=level)
            centre = _xyz(np.argwhere(named), affine).mean(axis=0)
            truths = truth["landmarks_lps_mm"]
            nearest = min(LEVELS, key=lambda lv: float(np.linalg.norm(centre - truths[lv]["disc_centre"])))
            assert nearest == level, (level, nearest)  # the generator's own centre of that disc is the nearest
        assert not relabelled[added].any(), np.unique(relabelled[added])
        n += 1
    assert n == 3


# ---------------------------------------------------------------------------------------------------------
# reconcile_sagittal: a second sagittal series checks the names


def _set(names: list[str], z0: float, unsure: bool, conf: float = 1.0, spacing: float = 36.0):
    """Discs stacked along z (head up), the first name at z0, each next one a spacing lower."""
    from spine_seg.landmarks import LandmarkSet, LevelLandmark

    levels = tuple(
        LevelLandmark(
            level=n,
            xyz_lps_mm=(0.0, 0.0, z0 - i * spacing),
            normal_lps=(0.0, 0.0, 1.0),
            canal_xyz_lps_mm=(0.0, 20.0, z0 - i * spacing),
            canal_source="canal_label",
            confidence=conf,
            reasons=() if conf == 1 else ("counting anchor in doubt",),
        )
        for i, n in enumerate(names)
    )
    return LandmarkSet(
        levels=levels,
        missing=(),
        warnings=(),
        unsure=unsure,
        anchor="labels" if unsure else "sacrum",
        disc_spacing_mm=spacing,
    )


def test_reconcile_agreeing_series_change_nothing():
    from spine_seg.landmarks.structures import reconcile_sagittal

    t2 = _set(["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"], 0.0, unsure=False)
    t1 = _set(["l2_l3", "l3_l4", "l4_l5", "l5_s1"], -34.0, unsure=False)  # 2 mm apart: same discs
    assert reconcile_sagittal(t2, t1) is t2


def test_reconcile_disagreeing_anchors_make_names_unsure():
    from spine_seg.landmarks.structures import DISAGREEMENT_CONFIDENCE_CAP, reconcile_sagittal

    t2 = _set(["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"], 0.0, unsure=False)
    t1 = _set(["l2_l3", "l3_l4", "l4_l5", "l5_s1"], 0.0, unsure=False)  # the T1 calls the top disc L2/L3
    out = reconcile_sagittal(t2, t1)
    assert out.unsure and out.found_levels == t2.found_levels
    assert all(lm.confidence == DISAGREEMENT_CONFIDENCE_CAP for lm in out.levels)
    assert any("1 level lower" in w for w in out.warnings)


def test_reconcile_names_an_unanchored_series_from_the_other():
    from spine_seg.landmarks.structures import BORROWED_CONFIDENCE_FACTOR, reconcile_sagittal

    # the T2 missed the sacrum and counted its lowest disc as L5/S1; the T1's sacrum says it is L4/L5
    t2 = _set(["l2_l3", "l3_l4", "l4_l5", "l5_s1"], 0.0, unsure=True, conf=0.5)
    t1 = _set(["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"], 3.0, unsure=False, conf=0.95)
    out = reconcile_sagittal(t2, t1)
    assert not out.unsure and out.anchor == "sacrum (Sagittal T1)"
    assert out.found_levels == ("l1_l2", "l2_l3", "l3_l4", "l4_l5")
    assert out.missing_levels == ("l5_s1",)
    assert [lm.xyz_lps_mm for lm in out.levels] == [lm.xyz_lps_mm for lm in t2.levels]  # positions stay the T2's
    assert all(lm.confidence == pytest.approx(BORROWED_CONFIDENCE_FACTOR * 0.95) for lm in out.levels)
    assert all("counting anchor in doubt" not in lm.reasons for lm in out.levels)


def test_reconcile_keeps_the_primary_when_the_other_is_unsure_or_elsewhere():
    from spine_seg.landmarks.structures import reconcile_sagittal

    t2 = _set(["l3_l4", "l4_l5", "l5_s1"], 0.0, unsure=True, conf=0.5)
    t1 = _set(["l2_l3", "l3_l4", "l4_l5"], 0.0, unsure=True, conf=0.5)
    out = reconcile_sagittal(t2, t1)
    assert out.levels == t2.levels and out.unsure
    far = _set(["l3_l4", "l4_l5"], 500.0, unsure=False)
    out = reconcile_sagittal(t2, far)
    assert out.levels == t2.levels and any("not cross-checked" in w for w in out.warnings)


def test_reconcile_ignores_a_weakly_anchored_other_series():
    from spine_seg.landmarks.structures import reconcile_sagittal

    t2 = _set(["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"], 0.0, unsure=False)
    weak = _set(["l2_l3", "l3_l4", "l4_l5"], 0.0, unsure=False, conf=0.5)  # anchored, but not confidently
    assert reconcile_sagittal(t2, weak) is t2
    few = _set(["l2_l3", "l3_l4"], 0.0, unsure=False)  # two discs are too few to name a spine
    assert reconcile_sagittal(t2, few) is t2


# ---------------------------------------------------------------------------------------------------------
# counting on hand-built structure volumes


def _column(sacrum_bleed_mm: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five 25 mm bodies and five 10 mm discs above a 40 mm sacrum, 1 mm voxels: ``[k, j, i]`` with k → L,
    j → feet, i → posterior. ``sacrum_bleed_mm``: the sacrum label also covers the back of L5 that far up."""
    labels = np.zeros((20, 220, 70), dtype=np.uint8)
    j = 5
    for _ in range(5):
        labels[:, j : j + 25, 20:55] = BASE_LABELS["vertebra"]
        labels[:, j + 25 : j + 35, 20:55] = BASE_LABELS["disc"]
        j += 35
    labels[:, j : j + 40, 20:55] = BASE_LABELS["sacrum"]
    if sacrum_bleed_mm:
        labels[:, j - 10 - sacrum_bleed_mm : j, 47:55] = BASE_LABELS["sacrum"]  # up behind the L5/S1 disc and L5
    affine = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return labels, affine


def test_counting_names_the_disc_above_the_sacrum_l5_s1():
    from spine_seg.core.labels import SEG_DISC_OF_LEVEL
    from spine_seg.landmarks.structures import relabel_base

    labels, affine = _column()
    out, doubts = relabel_base(labels, affine)
    assert not doubts
    for n, level in enumerate(LEVELS):
        j = 5 + 35 * n + 30
        assert out[10, j, 37] == SEG_DISC_OF_LEVEL[level]


def test_a_sacrum_label_bleeding_up_behind_l5_does_not_swallow_l5_s1():
    from spine_seg.core.labels import SEG_DISC_OF_LEVEL
    from spine_seg.landmarks.structures import relabel_base

    labels, affine = _column(sacrum_bleed_mm=20)  # one component: its upper end is now inside L5
    out, doubts = relabel_base(labels, affine)
    assert out[10, 5 + 35 * 4 + 30, 37] == SEG_DISC_OF_LEVEL["l5_s1"]  # vertebra, not sacrum, sits on it
    assert out[10, 5 + 30, 37] == SEG_DISC_OF_LEVEL["l1_l2"] and not doubts


def _tilted(tilts_deg: list[float]):
    from spine_seg.landmarks import LandmarkSet, LevelLandmark

    levels = []
    for n, (level, a) in enumerate(zip(LEVELS, tilts_deg, strict=False)):
        r = np.radians(a)
        levels.append(
            LevelLandmark(
                level=level,
                xyz_lps_mm=(0.0, 0.0, -36.0 * n),
                normal_lps=(0.0, -np.sin(r), np.cos(r)),
                canal_xyz_lps_mm=(0.0, 20.0, -36.0 * n),
                canal_source="canal_label",
            )
        )
    return LandmarkSet(
        levels=tuple(levels), missing=(), warnings=(), unsure=False, anchor="sacrum", disc_spacing_mm=36.0
    )


def test_a_lowest_disc_that_turns_back_from_the_lordosis_is_doubted():
    from spine_seg.landmarks.structures import _junction_doubts

    assert _junction_doubts(_tilted([0, 2, 10, 20, 35])) == []  # lordosis down to L5/S1
    assert _junction_doubts(_tilted([0, 2, 12, 30, 10]))  # the lowest turns back 20°: a sacral remnant
    assert _junction_doubts(_tilted([0, 2, 12])) == []  # too few discs to read a curve


def _six_disc_column() -> tuple[np.ndarray, np.ndarray]:
    """:func:`_column` with one more body and disc on top (T12/L1 in view) and L3/L4 not segmented, as in
    vb2_16: the count from the sacrum leaves a gap at l3_l4, so the top disc falls above l1_l2."""
    labels = np.zeros((20, 255, 70), dtype=np.uint8)
    j = 5
    for n in range(6):
        labels[:, j : j + 25, 20:55] = BASE_LABELS["vertebra"]
        if n != 3:
            labels[:, j + 25 : j + 35, 20:55] = BASE_LABELS["disc"]
        j += 35
    labels[:, j : j + 40, 20:55] = BASE_LABELS["sacrum"]
    affine = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return labels, affine


def _disc_rows(landmarks) -> dict[str, float]:
    return {lm.level: round(-lm.xyz_lps_mm[2], 1) for lm in landmarks.levels}  # j of each disc centre


def test_a_shifted_count_names_the_disc_above_l1_l2_and_drops_the_lowest():
    """What the sacral-remnant reading needs: every name one level lower, the lowest disc below l5_s1 and out,
    and the disc the first count left above l1_l2 named l1_l2 instead of lost (vb2_16 lost its L1/L2 so)."""
    from spine_seg.landmarks.structures import relabel_base

    labels, affine = _six_disc_column()
    seg, _ = relabel_base(labels, affine)
    top, lowest = 5 + 29.5, 5 + 35 * 5 + 29.5  # rows of the top and the lowest disc's centres
    first = landmarks_from_labels(seg, affine)
    assert first.missing_levels == ("l3_l4",) and any("above l1_l2" in w for w in first.warnings)
    assert _disc_rows(first)["l5_s1"] == lowest and top not in _disc_rows(first).values()
    shifted = landmarks_from_labels(seg, affine, level_shift=1)
    assert shifted.missing_levels == ("l4_l5",)
    assert any("below l5_s1" in w for w in shifted.warnings) and any("named 1 lower" in w for w in shifted.warnings)
    assert _disc_rows(shifted) == {
        "l1_l2": top,
        **{LEVELS[LEVELS.index(lv) + 1]: row for lv, row in _disc_rows(first).items() if lv != "l5_s1"},
    }


def test_the_remnant_reading_applies_only_when_l5_s1_was_counted():
    from spine_seg.landmarks.structures import _over_sacral_remnant, relabel_base

    labels, affine = _six_disc_column()
    seg, _ = relabel_base(labels, affine)
    without_l5_s1 = _tilted([0, 2, 12, 30])  # found down to l4_l5 only: nothing was counted from a remnant
    assert _over_sacral_remnant(without_l5_s1, seg, affine) is without_l5_s1
    out = _over_sacral_remnant(landmarks_from_labels(seg, affine), seg, affine)
    assert out.found_levels == ("l1_l2", "l2_l3", "l3_l4", "l5_s1")
    assert all("turns back" in lm.reasons[-1] for lm in out.levels)


def _wide_column(shift_per_level_mm: int = 0, joints: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_column` 90 mm wide (k → L): the spine in the middle, each level ``shift_per_level_mm`` further to
    the left going down (a scoliosis), and with ``joints`` two disc-labelled blobs 30 mm either side of the
    sacrum, as a network labels the bright sacroiliac joints of a wide field of view."""
    labels = np.zeros((90, 220, 70), dtype=np.uint8)
    j = 5
    for level in range(5):
        k0 = 35 + level * shift_per_level_mm
        labels[k0 : k0 + 20, j : j + 25, 20:55] = BASE_LABELS["vertebra"]
        labels[k0 : k0 + 20, j + 25 : j + 35, 20:55] = BASE_LABELS["disc"]
        j += 35
    labels[35:55, j : j + 40, 20:55] = BASE_LABELS["sacrum"]
    if joints:
        labels[0:12, j + 5 : j + 25, 25:60] = BASE_LABELS["disc"]
        labels[78:90, j + 5 : j + 25, 25:60] = BASE_LABELS["disc"]
    affine = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return labels, affine


def test_disc_shaped_joints_beside_the_sacrum_are_not_levels():
    """Without the midline rule the two joints would be the lowest "discs": the sacrum above them is then not
    under the lowest disc, and the names would fall back to the count, unsure."""
    from spine_seg.core.labels import SEG_DISC_OF_LEVEL
    from spine_seg.landmarks.structures import relabel_base

    labels, affine = _wide_column(joints=True)
    out, doubts = relabel_base(labels, affine)
    assert not doubts
    for n, level in enumerate(LEVELS):
        assert out[45, 5 + 35 * n + 30, 37] == SEG_DISC_OF_LEVEL[level]
    assert out[5, 5 + 35 * 5 + 15, 40] == 0 and out[84, 5 + 35 * 5 + 15, 40] == 0
    ls = landmarks_from_label_volume(LabelVolume(labels, affine, {v: k for k, v in BASE_LABELS.items()}))
    assert ls.anchor == "sacrum" and not ls.unsure and ls.found_levels == LEVELS


def test_a_scoliosis_keeps_every_disc():
    from spine_seg.core.labels import SEG_DISC_OF_LEVEL
    from spine_seg.landmarks.structures import relabel_base

    labels, affine = _wide_column(shift_per_level_mm=8)  # 32 mm from L1/L2 to L5/S1, 8 mm per level
    out, _ = relabel_base(labels, affine)
    for n, level in enumerate(LEVELS):
        assert out[45 + 8 * n, 5 + 35 * n + 30, 37] == SEG_DISC_OF_LEVEL[level]


def _column_without_l5_s1(gap_mm: int) -> tuple[np.ndarray, np.ndarray]:
    """``_column``'s spine with no L5/S1 disc label: L5 and the sacrum ``gap_mm`` apart (0: touching)."""
    labels = np.zeros((20, 240, 70), dtype=np.uint8)
    j = 5
    for n in range(5):
        labels[:, j : j + 25, 20:55] = BASE_LABELS["vertebra"]
        if n < 4:
            labels[:, j + 25 : j + 35, 20:55] = BASE_LABELS["disc"]
        j += 35 if n < 4 else 25 + gap_mm
    labels[:, j : j + 40, 20:55] = BASE_LABELS["sacrum"]
    labels[8:12, 5:230, 58:70] = BASE_LABELS["spinal_canal"]
    affine = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return labels, affine


@pytest.mark.parametrize("gap_mm", [10, 3, 0])
def test_a_collapsed_or_unsegmented_l5_s1_is_placed_between_the_endplates(gap_mm: int):
    from spine_seg.landmarks.structures import GAP_DISC_CONFIDENCE, landmarks_from_label_volume
    from spine_seg.segmentation.predict import LabelVolume

    labels, affine = _column_without_l5_s1(gap_mm)
    ls = landmarks_from_label_volume(LabelVolume(labels, affine, {v: k for k, v in BASE_LABELS.items()}))
    assert ls.found_levels == LEVELS and not ls.missing and ls.anchor == "sacrum"
    lm = ls["l5_s1"]
    l5_bottom, sacrum_top = 5 + 4 * 35 + 25, 5 + 4 * 35 + 25 + gap_mm  # rows (mm, feet-wards)
    assert lm.disc_xyz[2] == pytest.approx(-(l5_bottom + sacrum_top - 1) / 2, abs=1.0)
    assert lm.disc_xyz[1] == pytest.approx(37.0, abs=1.0)  # in the column, not behind it
    assert lm.confidence <= GAP_DISC_CONFIDENCE and "facing endplates" in lm.reasons[0]
    assert lm.canal_source == "canal_label" and lm.canal_xyz[1] == pytest.approx(63.5, abs=1.0)
    assert ls["l4_l5"].disc_xyz[2] == pytest.approx(-(5 + 3 * 35 + 30 - 0.5), abs=1.0)  # the others unmoved


def test_a_sacrum_far_below_l5_gets_no_placed_disc():
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.segmentation.predict import LabelVolume

    labels, affine = _column_without_l5_s1(30)  # more than one disc space: not a disc's gap
    ls = landmarks_from_label_volume(LabelVolume(labels, affine, {v: k for k, v in BASE_LABELS.items()}))
    assert not any("facing endplates" in r for lm in ls.levels for r in lm.reasons)


def test_a_single_2d_slice_is_counted_from_its_sacrum():
    """A sagittal image (SPIDER's slices) is a one-slice volume: a disc one slice thick must not take the
    slice's normal for its own, and a sacrum one slice thick is still an anchor."""
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.segmentation.predict import LabelVolume

    labels, affine = _column()
    one = labels[10:11]
    ls = landmarks_from_label_volume(LabelVolume(one, affine, {v: k for k, v in BASE_LABELS.items()}))
    assert ls.anchor == "sacrum" and not ls.unsure and ls.found_levels == LEVELS
    for n, level in enumerate(LEVELS):
        assert ls[level].disc_xyz[2] == pytest.approx(-(5 + 35 * n + 29.5), abs=1.0)
        assert abs(ls[level].normal[2]) > 0.99  # the disc's normal runs along the spine, not across the slice
    one_without = _column_without_l5_s1(10)[0][10:11]
    ls = landmarks_from_label_volume(LabelVolume(one_without, affine, {v: k for k, v in BASE_LABELS.items()}))
    assert ls.found_levels == LEVELS and "facing endplates" in ls["l5_s1"].reasons[0]


def test_a_tilted_lumbosacral_junction_is_read_strip_by_strip():
    """L5's lower and the sacrum's upper endplates sloping 20° together, 6 mm apart: across the whole column
    the sacrum's front stands above L5's back (no gap by percentiles), yet every front-to-back strip has one."""
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.segmentation.predict import LabelVolume

    labels, affine = _column_without_l5_s1(0)
    l5_bottom = 5 + 4 * 35 + 25
    labels[:, l5_bottom - 10 :, 20:55][labels[:, l5_bottom - 10 :, 20:55] != 0] = 0  # redraw the junction
    slope = np.tan(np.radians(20.0))
    for i in range(20, 55):
        rise = int(round((55 - i) * slope))  # higher towards the front (small i)
        labels[:, l5_bottom - 10 : l5_bottom - rise, i] = BASE_LABELS["vertebra"]
        labels[:, l5_bottom - rise + 6 : l5_bottom + 40, i] = BASE_LABELS["sacrum"]
    ls = landmarks_from_label_volume(LabelVolume(labels, affine, {v: k for k, v in BASE_LABELS.items()}))
    assert ls.found_levels == LEVELS and "facing endplates" in ls["l5_s1"].reasons[0]
    lm = ls["l5_s1"]
    i_mid = lm.disc_xyz[1]  # LPS y = column i (1 mm voxels)
    rise = (55 - i_mid) * slope
    assert lm.disc_xyz[2] == pytest.approx(-(l5_bottom - rise + 2.5), abs=1.5)  # in the 6 mm gap at that column
