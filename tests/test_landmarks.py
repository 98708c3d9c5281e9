"""Label volume → level landmarks, on the synthetic cohort's true SPIDER masks and on corrupted copies of them.

The corruptions are the ways a predicted mask goes wrong: labels shifted by one level, a field of view that
misses L1/L2, no sacrum, a missed disc, spurious blobs, an unusual array layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import (
    SEG_LABELS,
    SPIDER_CANAL,
    SPIDER_PARTIAL_OFFSET,
    SPIDER_VERTEBRA_NUMBER,
    SYNTHETIC_SACRUM,
    seg_labels_from_spider,
    spider_disc_label,
)
from spine_seg.landmarks import (
    LandmarkSet,
    landmarks_from_labels,
    landmarks_from_points,
    landmarks_from_vertebrae,
    load_label_volume,
)
from spine_seg.synthetic import CohortConfig, generate_cohort

SACRUM = SEG_LABELS["sacrum"]


@dataclass(frozen=True)
class Case:
    study_id: str
    labels: np.ndarray  # spineseg labels [k, j, i]
    affine: np.ndarray
    truth: dict

    @property
    def has_sacrum(self) -> bool:
        return bool((self.labels == SACRUM).any())

    def disc_truth(self, level: str) -> np.ndarray:
        return np.asarray(self.truth["landmarks_lps_mm"][level]["disc_centre"])

    def true_level_of(self, xyz: np.ndarray) -> str:
        """The level whose true disc centre is nearest a point: what a found disc really is."""
        return min(LEVELS, key=lambda lv: float(np.linalg.norm(self.disc_truth(lv) - xyz)))


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    """Three synthetic studies and their Sagittal T2 masks (SPIDER values, converted to spineseg labels)."""
    root = tmp_path_factory.mktemp("landmark_cohort") / "cohort"
    generate_cohort(root, CohortConfig(n_studies=3, seed=1, test_fraction=0.0))
    overview = pd.read_csv(root / "spider" / "overview.csv", dtype=str)
    out = []
    for row in overview[overview.new_file_name.str.endswith("_t2")].itertuples():
        labels, affine = load_label_volume(root / "spider" / "masks" / f"{row.new_file_name}.mha", spider=True)
        truth = json.loads((root / "truth" / f"{row.synthetic_study_id}.json").read_text())
        out.append(Case(row.synthetic_study_id, labels, affine, truth))
    return out


@pytest.fixture(scope="session")
def with_sacrum(cases: list[Case]) -> list[Case]:
    found = [c for c in cases if c.has_sacrum]
    assert len(found) >= 2, "the cohort's sagittal fields of view should reach the sacrum"
    return found


def _assert_levels_true(case: Case, ls: LandmarkSet) -> None:
    for lm in ls.levels:
        assert case.true_level_of(lm.disc_xyz) == lm.level, (case.study_id, lm.level, ls.warnings)


def _shift(labels: np.ndarray, step: int) -> np.ndarray:
    """Relabel one level down (+1: L4 → L5, l3_l4 → l4_l5) or up (-1), clipping at the ends; sacrum kept."""
    lut = np.arange(max(SEG_LABELS.values()) + 1)
    for v in range(1, 6):  # L1..L5; with +1, L5 becomes "sacrum"
        lut[v] = int(np.clip(v + step, 1, 6))
    for v in range(7, 12):  # discs l1_l2..l5_s1
        lut[v] = int(np.clip(v + step, 7, 11))
    return lut[labels]


# ---------------------------------------------------------------------------------------------------------


def test_true_masks_accuracy(cases: list[Case]):
    errors, canal_errors, body_errors = [], [], []
    for case in cases:
        ls = landmarks_from_labels(case.labels, case.affine)
        _assert_levels_true(case, ls)
        assert ls.unsure == (not case.has_sacrum), (case.study_id, ls.warnings)
        assert ls.anchor == ("sacrum" if case.has_sacrum else "labels")
        assert set(ls.found_levels) | set(ls.missing_levels) == set(LEVELS)
        upper = dict(zip(LEVELS, ("L1", "L2", "L3", "L4", "L5"), strict=True))
        for lm in ls.levels:
            errors.append(float(np.linalg.norm(lm.disc_xyz - case.disc_truth(lm.level))))
            canal_truth = np.asarray(case.truth["landmarks_lps_mm"][lm.level]["canal_centre"])
            canal_errors.append(float(np.linalg.norm(lm.canal_xyz - canal_truth)))
            assert lm.canal_source == "canal_label"
            assert 0 < lm.confidence <= 1 and lm.disc_volume_mm3 > 1000
            if lm.upper_vertebra_xyz_lps_mm is not None:
                body = np.asarray(case.truth["vertebra_centres_lps_mm"][upper[lm.level]])
                body_errors.append(float(np.linalg.norm(np.asarray(lm.upper_vertebra_xyz_lps_mm) - body)))
            # the normal points superior and the foramen offset is in the anatomical range
            assert lm.normal[2] > 0.5 and 14 <= lm.foramen_offset_mm <= 26
        json.dumps(ls.to_dict())
    assert len(errors) >= 15
    assert np.median(errors) <= 1.5 and max(errors) < 4.0, errors
    assert np.median(canal_errors) <= 1.5, canal_errors
    assert np.median(body_errors) <= 2.0, body_errors


def _crop_rows(case: Case, start: int, stop: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows start:stop of the mask, with the affine moved to match (a shorter field of view)."""
    affine = case.affine.copy()
    affine[:3, 3] = case.affine[:3, :3] @ [0, start, 0] + case.affine[:3, 3]
    return case.labels[:, start:stop, :], affine


def _row_between(case: Case, upper: str, lower: str) -> int:
    inv = np.linalg.inv(case.affine)
    j_upper = (inv @ [*case.disc_truth(upper), 1.0])[1]
    j_lower = (inv @ [*case.disc_truth(lower), 1.0])[1]
    assert j_upper < j_lower  # rows run head → feet in the synthetic sagittal stacks
    return int(round((j_upper + j_lower) / 2))


def test_field_of_view_ending_in_l5(with_sacrum: list[Case]):
    """Crop the rows below the middle of L5: no sacrum, L5/S1 outside; names from the labels, unsure."""
    for case in with_sacrum:
        inv = np.linalg.inv(case.affine)
        j_l5_s1 = (inv @ [*case.disc_truth("l5_s1"), 1.0])[1]
        j_l4_l5 = (inv @ [*case.disc_truth("l4_l5"), 1.0])[1]
        cut = int(round(j_l5_s1 - 0.4 * (j_l5_s1 - j_l4_l5)))
        labels, affine = _crop_rows(case, 0, cut)
        ls = landmarks_from_labels(labels, affine)
        assert ls.unsure and ls.anchor == "labels" and ls.found_levels == LEVELS[:4]
        _assert_levels_true(case, ls)
        assert any("no sacrum" in w for w in ls.warnings)
        (missing,) = ls.missing
        assert missing.level == "l5_s1" and "outside the field of view" in missing.reason


@pytest.mark.parametrize("step", [+1, -1])
def test_shifted_labels_fixed_by_sacrum_anchor(with_sacrum: list[Case], step: int):
    for case in with_sacrum:
        ls = landmarks_from_labels(_shift(case.labels, step), case.affine)
        assert ls.anchor == "sacrum" and not ls.unsure, ls.warnings
        assert ls.found_levels == LEVELS
        _assert_levels_true(case, ls)
        # the disagreement is reported: per level, and as two components claiming the clipped end level
        relabelled = [lm for lm in ls.levels if lm.mask_level != lm.level]
        assert len(relabelled) == 4
        assert all(lm.confidence < 1 and any("mask labels this disc" in r for r in lm.reasons) for lm in relabelled)
        assert any("disc components are labelled" in w for w in ls.warnings)


def test_shifted_labels_without_sacrum_are_unsure(with_sacrum: list[Case]):
    for case in with_sacrum:
        shifted = _shift(case.labels, +1)
        shifted[shifted == SACRUM] = 0
        ls = landmarks_from_labels(shifted, case.affine)
        assert ls.unsure and ls.anchor == "labels"
        # the labels were trusted, so the names are off by one — and said to be unsure
        assert {case.true_level_of(lm.disc_xyz) for lm in ls.levels} != {lm.level for lm in ls.levels}


def test_dropping_the_sacrum_sets_unsure(with_sacrum: list[Case]):
    for case in with_sacrum:
        labels = np.where(case.labels == SACRUM, 0, case.labels)
        ls = landmarks_from_labels(labels, case.affine)
        assert ls.unsure and ls.anchor == "labels"
        _assert_levels_true(case, ls)  # the true labels were right, so the fallback is too
        assert all(any("no sacrum anchor" in r for r in lm.reasons) for lm in ls.levels)


def test_field_of_view_without_l1_l2(with_sacrum: list[Case]):
    """Crop the rows above the middle of L2: L1/L2 leaves the image, the rest keep their names."""
    for case in with_sacrum:
        labels, affine = _crop_rows(case, _row_between(case, "l1_l2", "l2_l3"), None)
        ls = landmarks_from_labels(labels, affine)
        assert ls.found_levels == LEVELS[1:] and not ls.unsure
        _assert_levels_true(case, ls)
        (missing,) = ls.missing
        assert missing.level == "l1_l2" and "outside the field of view" in missing.reason


def test_missed_disc_is_a_gap(with_sacrum: list[Case]):
    """Erase the L3/L4 disc: the gap is seen, the discs around it keep their names, L3/L4 is reported."""
    for case in with_sacrum:
        labels = np.where(case.labels == SEG_LABELS["disc_l3_l4"], 0, case.labels)
        ls = landmarks_from_labels(labels, case.affine)
        assert ls.found_levels == ("l1_l2", "l2_l3", "l4_l5", "l5_s1")
        _assert_levels_true(case, ls)
        assert any("gap" in w for w in ls.warnings)
        (missing,) = ls.missing
        assert missing.level == "l3_l4" and "not segmented" in missing.reason


def test_missed_l5_s1_is_told_by_the_body_above_the_sacrum(with_sacrum: list[Case]):
    """A thin or fused L5/S1 the network did not segment: the L5/S1 disc voxels become L5 bone and the labels
    count from the lowest disc (as the base model's counting stage does), calling L4/L5 "l5_s1". The L5 body
    between that disc and the sacrum says it is L4/L5."""
    for case in with_sacrum:
        labels = case.labels.copy()
        labels[labels == SEG_LABELS["disc_l5_s1"]] = SEG_LABELS["L5"]
        discs = np.isin(labels, [SEG_LABELS[f"disc_{lv}"] for lv in LEVELS])
        labels = np.where(discs, _shift(labels, +1), labels)  # the discs counted up from the lowest
        ls = landmarks_from_labels(labels, case.affine)
        assert ls.anchor == "sacrum" and ls.found_levels == LEVELS[:4], ls.warnings
        _assert_levels_true(case, ls)
        assert any("a vertebral body lies between, so it is l4_l5" in w for w in ls.warnings)
        (missing,) = ls.missing
        assert missing.level == "l5_s1" and "not segmented" in missing.reason


def _column(gap_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A hand-built straight lumbar column on a 1 mm grid: five discs (8 mm tall, 36 mm apart) and the bodies
    between them, a canal behind, and a sacrum whose top lies ``gap_mm`` under the lowest disc's centre, with
    bone (a body) filling the gap. Disc labels count up from the lowest as l5_s1, like the counting stage's."""
    labels = np.zeros((40, 300, 80), dtype=np.uint8)  # [k: L–R, j: S–I head → feet, i: A–P]
    kk, ii = np.ogrid[:40, :80]

    def paint(start: int, stop: int, footprint: np.ndarray, value: int) -> None:
        rows = labels[:, start:stop]
        rows[np.broadcast_to(footprint[:, None, :], rows.shape)] = value

    body = ((kk - 20) / 14.0) ** 2 + ((ii - 30) / 14.0) ** 2 <= 1.0
    paint(0, labels.shape[1], ((kk - 20) / 6.0) ** 2 + ((ii - 55) / 6.0) ** 2 <= 1.0, SEG_LABELS["spinal_canal"])
    for d, (level, vertebra) in enumerate(zip(LEVELS, ("L1", "L2", "L3", "L4", "L5"), strict=True)):
        c = 40 + 36 * d
        paint(c - 4, c + 4, body, SEG_LABELS[f"disc_{level}"])
        paint(c - 32 if d else c - 30, c - 4, body, SEG_LABELS[vertebra])
    lowest = 40 + 36 * 4
    sacrum_top = lowest + int(round(gap_mm))
    paint(lowest + 4, sacrum_top, body, SEG_LABELS["L5"])  # bone between the disc and the sacrum (L5 when tall)
    paint(sacrum_top, sacrum_top + 45, ((kk - 20) / 18.0) ** 2 + ((ii - 35) / 20.0) ** 2 <= 1.0, SACRUM)
    affine = np.array([[0.0, 0, 1, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])  # i → P, j → feet, k → L
    return labels, affine


@pytest.mark.parametrize(
    ("gap_mm", "lowest", "unsure"),
    [
        (5.0, "l5_s1", False),  # a disc resting on the sacrum
        (9.0, "l5_s1", True),  # short of the cut, but in the doubt band
        (13.0, "l4_l5", True),  # past the cut, still in the band
        (18.0, "l4_l5", False),  # the real volumes' missed L5/S1: the sacrum's back rises behind L5
        (32.0, "l4_l5", False),  # a whole L5 body between
    ],
)
def test_sacrum_gap_decides_l5_s1_or_l4_l5(gap_mm: float, lowest: str, unsure: bool):
    """How far the lowest disc's centre lies above the sacrum's top decides whether it is L5/S1 (about half a disc
    height) or L4/L5 with L5 between; in the band between the two the names are unsure and not confident."""
    labels, affine = _column(gap_mm)
    ls = landmarks_from_labels(labels, affine)
    assert ls.anchor == "sacrum", ls.warnings
    assert ls.levels[-1].level == lowest, ls.warnings
    assert ls.unsure == unsure, ls.warnings
    if unsure:
        assert all(lm.confidence < 0.8 for lm in ls.levels)
        assert any("sacrum anchor in doubt" in r for r in ls.levels[0].reasons)
    elif lowest == "l5_s1":
        assert min(lm.confidence for lm in ls.levels) >= 0.8
    else:  # the labels counted from the lowest disc as l5_s1: the disagreement is kept as a doubt
        assert all(lm.confidence == pytest.approx(0.7) for lm in ls.levels)
        assert all(any("the mask labels this disc" in r for r in lm.reasons) for lm in ls.levels)


def test_sacrum_far_below_the_lowest_disc_is_not_trusted():
    labels, affine = _column(60.0)
    ls = landmarks_from_labels(labels, affine)
    assert ls.anchor == "labels" and ls.unsure
    assert any("the sacrum is not trusted" in w for w in ls.warnings)


def test_spurious_blobs_are_dropped(with_sacrum: list[Case]):
    case = with_sacrum[0]
    labels = case.labels.copy()
    k, j, i = labels.shape
    labels[1:3, 5:8, 5:8] = SEG_LABELS["disc_l1_l2"]  # a far-away speck claiming L1/L2
    labels[k // 2, j - 6 : j - 4, 4:6] = SACRUM  # and one of "sacrum"
    ls = landmarks_from_labels(labels, case.affine)
    clean = landmarks_from_labels(case.labels, case.affine)
    assert ls.found_levels == clean.found_levels
    assert any("small disc component" in w for w in ls.warnings)
    for a, b in zip(ls.levels, clean.levels, strict=True):
        assert np.allclose(a.disc_xyz, b.disc_xyz)


def test_independent_of_array_layout(with_sacrum: list[Case]):
    """The same voxels stored [j, i, k] instead of [k, j, i] (columns of the affine permuted to match)."""
    case = with_sacrum[0]
    labels = np.transpose(case.labels, (1, 2, 0))  # new array axes: (j, i, k) → new (i', j', k') = (k, i, j)
    affine = case.affine.copy()
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = case.affine[:3, 2], case.affine[:3, 0], case.affine[:3, 1]
    a = landmarks_from_labels(labels, affine)
    b = landmarks_from_labels(case.labels, case.affine)
    assert a.found_levels == b.found_levels and a.anchor == b.anchor == "sacrum"
    for x, y in zip(a.levels, b.levels, strict=True):
        assert np.allclose(x.disc_xyz, y.disc_xyz) and np.allclose(x.canal_xyz, y.canal_xyz)


def test_seg_labels_from_spider():
    mask = np.array(
        [
            SPIDER_VERTEBRA_NUMBER["L5"],
            SYNTHETIC_SACRUM,
            SPIDER_PARTIAL_OFFSET + SPIDER_VERTEBRA_NUMBER["L4"],
            SPIDER_CANAL,
            spider_disc_label("L5"),
            spider_disc_label("L1"),
            spider_disc_label("T12"),
            SPIDER_VERTEBRA_NUMBER["T12"],
            0,
        ]
    ).reshape(1, 1, -1)
    out = seg_labels_from_spider(mask).ravel().tolist()
    assert out == [
        SEG_LABELS["L5"],
        SACRUM,
        SEG_LABELS["L4"],
        SEG_LABELS["spinal_canal"],
        SEG_LABELS["disc_l5_s1"],
        SEG_LABELS["disc_l1_l2"],
        0,
        0,
        0,
    ]
    assert seg_labels_from_spider(mask, keep_partial=False).ravel()[2] == 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not spineseg labels; valid"):
        landmarks_from_labels(np.full((2, 2, 2), 201), np.eye(4))
    with pytest.raises(ValueError, match="3-D"):
        landmarks_from_labels(np.zeros((2, 2)), np.eye(4))
    empty = landmarks_from_labels(np.zeros((3, 3, 3), dtype=np.uint8), np.eye(4))
    assert empty.unsure and empty.missing_levels == LEVELS and not empty.levels
    with pytest.raises(ValueError, match="unknown level"):
        landmarks_from_points({"l6_s1": (0, 0, 0)})
    with pytest.raises(ValueError, match="unknown level"):
        empty.get("L4/L5")


def test_landmarks_from_points(tmp_path: Path):
    pts = {lv: (0.0, 60.0 + i, -450.0 - 35.0 * i) for i, lv in enumerate(LEVELS[:4])}
    ls = landmarks_from_points(pts)
    assert ls.found_levels == LEVELS[:4] and ls.missing_levels == ("l5_s1",) and ls.anchor == "keypoints"
    assert all(lm.normal[2] > 0.99 and lm.canal_source == "keypoint" for lm in ls.levels)
    assert ls.disc_spacing_mm == pytest.approx(np.hypot(1, 35))
    assert json.loads(json.dumps(ls.to_dict()))["levels"][0]["level"] == "l1_l2"


def test_split_and_mixed_discs(with_sacrum: list[Case]):
    """A disc cut in two by an empty slice is merged back; a disc with two labels is one disc, flagged."""
    case = with_sacrum[0]
    disc = SEG_LABELS["disc_l3_l4"]
    kk = np.nonzero((case.labels == disc).any(axis=(1, 2)))[0]
    mid = int(kk[len(kk) // 2])
    split = case.labels.copy()
    split[mid][split[mid] == disc] = 0
    ls = landmarks_from_labels(split, case.affine)
    assert ls.found_levels == LEVELS and not ls.unsure
    _assert_levels_true(case, ls)
    assert any("merged" in r for r in ls["l3_l4"].reasons) and any("merged disc fragments" in w for w in ls.warnings)

    mixed = case.labels.copy()
    part = mixed[: mid + 2]
    part[part == disc] = SEG_LABELS["disc_l4_l5"]
    ls = landmarks_from_labels(mixed, case.affine)
    assert ls.found_levels == LEVELS
    _assert_levels_true(case, ls)
    assert any("mixed disc labels" in r for r in ls["l3_l4"].reasons)


def test_canal_missing_falls_back_to_the_disc_margin(with_sacrum: list[Case]):
    case = with_sacrum[0]
    labels = np.where(case.labels == SEG_LABELS["spinal_canal"], 0, case.labels)
    ls = landmarks_from_labels(labels, case.affine)
    clean = landmarks_from_labels(case.labels, case.affine)
    for lm, ref in zip(ls.levels, clean.levels, strict=True):
        assert lm.canal_source == "disc_posterior_margin" and lm.confidence < ref.confidence
        canal_truth = np.asarray(case.truth["landmarks_lps_mm"][lm.level]["canal_centre"])
        # on the disc's back edge: behind the disc centre, in front of the canal's centre
        behind = np.dot(lm.canal_xyz - lm.disc_xyz, canal_truth - lm.disc_xyz) / np.linalg.norm(
            canal_truth - lm.disc_xyz
        )
        assert 8 < behind < np.linalg.norm(canal_truth - lm.disc_xyz)


def _column_with_canal_shifts(shifts_mm: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_column` whose canal, around each disc, lies ``shifts_mm`` (one per level) off its tube's axis
    towards the patient's left: what a network's canal label does when it takes in a lateral recess."""
    labels, affine = _column(5.0)
    canal = SEG_LABELS["spinal_canal"]
    labels[labels == canal] = 0
    kk, ii = np.ogrid[:40, :80]
    for d, dk in enumerate(shifts_mm):
        c = 40 + 36 * d
        rows = labels[:, c - 18 : c + 18]
        tube = ((kk - 20 - dk) / 6.0) ** 2 + ((ii - 55) / 6.0) ** 2 <= 1.0
        rows[np.broadcast_to(tube[:, None, :], rows.shape) & (rows == 0)] = canal
    return labels, affine


def test_canal_points_share_the_study_midline():
    """Each level's canal centroid strays by a few mm; the canal points share one sagittal plane (x = k here)
    at the mean, while the foramina stay either side of each level's own canal centre."""
    from spine_seg.landmarks.project import foramen_points

    shifts = (3, -2, 0, 2, -3)
    ls = landmarks_from_labels(*_column_with_canal_shifts(shifts))
    assert ls.found_levels == LEVELS
    x = [float(lm.canal_xyz[0]) for lm in ls.levels]
    assert np.ptp(x) < 1e-6 and abs(x[0] - 20.0) < 0.3, x
    for lm, dk in zip(ls.levels, shifts, strict=True):
        assert lm.canal_source == "canal_label"
        assert abs(float(lm.canal_centre_xyz[0]) - (20 + dk)) < 0.3
        assert abs(lm.canal_midline_shift_mm + dk) < 0.3 and lm.to_dict()["canal_midline_shift_mm"] == round(
            lm.canal_midline_shift_mm, 2
        )
        assert np.allclose(lm.canal_xyz[1:], lm.canal_centre_xyz[1:])  # only the L–R place moves
        sides = foramen_points(lm)
        assert abs(float(sides["left"][0] + sides["right"][0]) / 2 - (20 + dk)) < 0.3


def test_a_stray_canal_does_not_pull_the_midline_and_moves_at_most_half_a_canal():
    """One level's canal label 13 mm off (a foramen taken for canal): the others set the midline, and that
    level's point moves only CANAL_MIDLINE_MAX_SHIFT_MM towards it, staying inside its own canal."""
    from spine_seg.landmarks.types import CANAL_MIDLINE_MAX_SHIFT_MM

    ls = landmarks_from_labels(*_column_with_canal_shifts((0, 1, 0, -1, 13)))
    x = {lm.level: float(lm.canal_xyz[0]) for lm in ls.levels}
    assert all(abs(x[lv] - 20.0) < 0.3 for lv in LEVELS[:4]), x
    assert abs(x["l5_s1"] - (33.0 - CANAL_MIDLINE_MAX_SHIFT_MM)) < 0.3, x


def test_one_canal_level_is_not_moved():
    """With the canal labelled at one level only there is no study midline to move it to."""
    labels, affine = _column_with_canal_shifts((0, 0, 0, 0, 4))
    canal = SEG_LABELS["spinal_canal"]
    labels[:, : 40 + 36 * 4 - 18][labels[:, : 40 + 36 * 4 - 18] == canal] = 0
    ls = landmarks_from_labels(labels, affine)
    by_level = {lm.level: lm for lm in ls.levels}
    assert by_level["l5_s1"].canal_source == "canal_label" and by_level["l5_s1"].canal_midline_shift_mm == 0.0
    assert abs(float(by_level["l5_s1"].canal_xyz[0]) - 24.0) < 0.3
    assert all(by_level[lv].canal_source == "disc_posterior_margin" for lv in LEVELS[:4])


def test_extra_disc_above_l1_l2_is_ignored(with_sacrum: list[Case]):
    """A mask that counted from T12: T12/L1 called l1_l2 and everything below one level too low."""
    case = with_sacrum[0]
    shifted = _shift(case.labels, +1)
    k, j, i = np.nonzero(case.labels == SEG_LABELS["disc_l1_l2"])
    step = int(round(_row_between(case, "l1_l2", "l2_l3") - j.mean())) * 2  # one disc spacing, in rows
    keep = j - step >= 0
    shifted[k[keep], j[keep] - step, i[keep]] = SEG_LABELS["disc_l1_l2"]
    ls = landmarks_from_labels(shifted, case.affine)
    assert ls.anchor == "sacrum" and ls.found_levels == LEVELS
    _assert_levels_true(case, ls)
    assert any("above l1_l2: ignored" in w for w in ls.warnings)


# ---------------------------------------------------------------------------------------------------------
# vertebra-only masks (MyoSegmenTUM-style: bodies L1–L5, no discs, canal or sacrum)


def _vertebrae_only(labels: np.ndarray, keep_sacrum: bool = False) -> np.ndarray:
    """The mask without discs and canal (labels 7–12) and, unless kept, without the sacrum (6)."""
    drop = 7 if keep_sacrum else SACRUM
    return np.where(labels >= drop, 0, labels)


def _disc_errors(case: Case, ls: LandmarkSet) -> list[float]:
    return [float(np.linalg.norm(lm.disc_xyz - case.disc_truth(lm.level))) for lm in ls.levels]


def test_vertebra_only_mask_places_discs_between_the_bodies(cases: list[Case]):
    """No discs and no sacrum: L1/L2..L4/L5 midway between the facing endplates, L5/S1 missing, unsure."""
    errors, canal_errors = [], []
    for case in cases:
        labels = _vertebrae_only(case.labels)
        ls = landmarks_from_labels(labels, case.affine)
        assert ls.source == "vertebrae" and ls.found_levels == LEVELS[:4], ls.warnings
        assert ls.anchor == "labels" and ls.unsure
        _assert_levels_true(case, ls)
        (missing,) = ls.missing
        assert missing.level == "l5_s1" and missing.reason == "no sacrum in the mask: L5/S1 needs the body below it"
        for lm in ls.levels:
            assert lm.canal_source == "vertebra_posterior_estimate" and lm.normal[2] > 0.5
            assert lm.confidence <= 0.7 and any("inferred from the vertebral bodies" in r for r in lm.reasons)
            assert lm.mask_level == lm.level and lm.upper_vertebra_xyz_lps_mm is not None
            assert 14 <= lm.foramen_offset_mm <= 24 and lm.foramen_offset_source == "body_width"
            canal_truth = np.asarray(case.truth["landmarks_lps_mm"][lm.level]["canal_centre"])
            canal_errors.append(float(np.linalg.norm(lm.canal_xyz - canal_truth)))
        errors += _disc_errors(case, ls)
        json.dumps(ls.to_dict())
        direct = landmarks_from_vertebrae(labels, case.affine)  # the same, without the detour
        assert direct.found_levels == ls.found_levels
        assert all(np.allclose(a.disc_xyz, b.disc_xyz) for a, b in zip(direct.levels, ls.levels, strict=True))
    # measured on these three studies: median 0.4 mm, max 0.8 mm (disc); canal median 0.7 mm, max 1.7 mm
    assert max(errors) < 4.0 and np.median(errors) < 1.5, errors
    assert max(canal_errors) < 5.0, canal_errors

    one = np.where(_vertebrae_only(cases[0].labels) == SEG_LABELS["L3"], SEG_LABELS["L3"], 0)
    alone = landmarks_from_labels(one, cases[0].affine)  # one body: nothing to place a disc between
    assert not alone.levels and alone.missing[0].reason == "no disc component in the mask"


def test_vertebra_only_mask_with_sacrum_finds_l5_s1(with_sacrum: list[Case]):
    """Keeping the sacrum: L5/S1 between L5 and the sacrum, and the names counted up from it."""
    for case in with_sacrum:
        ls = landmarks_from_labels(_vertebrae_only(case.labels, keep_sacrum=True), case.affine)
        assert ls.found_levels == LEVELS and ls.anchor == "sacrum" and not ls.unsure, ls.warnings
        assert not ls.missing
        _assert_levels_true(case, ls)
        assert max(_disc_errors(case, ls)) < 4.0  # L5/S1, the worst: 1.2–2.0 mm here
        assert all(lm.confidence <= 0.7 for lm in ls.levels)


def test_vertebra_only_mask_with_label_mistakes(with_sacrum: list[Case]):
    """L5 labelled sacrum (labels one level down): the lowest sacrum anchors, unsure. L2 and L3 swapped:
    out of order, warned, unsure. L3 erased: a gap, its two levels missing inside the field of view."""
    for case in with_sacrum:
        shifted = landmarks_from_labels(_shift(_vertebrae_only(case.labels, keep_sacrum=True), +1), case.affine)
        assert shifted.anchor == "sacrum" and shifted.unsure, shifted.warnings
        _assert_levels_true(case, shifted)
        assert set(shifted.found_levels) >= set(LEVELS[1:])
        assert any("sacrum" in w and "vertebra" in w for w in shifted.warnings)

        labels = _vertebrae_only(case.labels, keep_sacrum=True)
        swapped = labels.copy()
        swapped[labels == SEG_LABELS["L2"]] = SEG_LABELS["L3"]
        swapped[labels == SEG_LABELS["L3"]] = SEG_LABELS["L2"]
        ls = landmarks_from_labels(swapped, case.affine)
        assert ls.unsure and any("out of order" in w for w in ls.warnings)
        _assert_levels_true(case, ls)

        gap = landmarks_from_labels(np.where(labels == SEG_LABELS["L3"], 0, labels), case.affine)
        assert gap.found_levels == ("l1_l2", "l4_l5", "l5_s1") and gap.anchor == "sacrum"
        _assert_levels_true(case, gap)
        assert any("gap" in w for w in gap.warnings)
        assert {m.level for m in gap.missing} == {"l2_l3", "l3_l4"}
        assert all("no L3 in the mask" in m.reason and "not segmented" in m.reason for m in gap.missing)


@pytest.mark.real_data
def test_vertebra_only_landmarks_on_real_myosegmentum(shared_data: Path):
    """A real MyoSegmenTUM ground truth (bodies L1–L5 only): four levels, superior → inferior, a vertebra apart."""
    from spine_seg_nnunet_tasks.Dataset503_MyoSegmenTUM import MYO_TO_SEG, affine, load_mat, to_sagittal_stack

    _, gt = load_mat(shared_data / "myosegmentum" / "01.mat")
    labels = np.zeros(gt.shape, dtype=np.uint8)
    for value, target in MYO_TO_SEG.items():  # as the converter maps them: GT 1..5 → SEG_LABELS L1..L5
        labels[gt == value] = target
    labels = to_sagittal_stack(labels)
    ls = landmarks_from_labels(labels, affine(labels.shape))
    assert ls.source == "vertebrae" and ls.found_levels == LEVELS[:4] and ls.missing_levels == ("l5_s1",)
    assert ls.anchor == "labels" and ls.unsure
    axis = np.asarray(ls.axis_superior_lps)
    heights = [float(np.dot(lm.disc_xyz, axis)) for lm in ls.levels]
    assert all(a > b for a, b in zip(heights, heights[1:], strict=False)), heights
    steps = [float(np.linalg.norm(a.disc_xyz - b.disc_xyz)) for a, b in zip(ls.levels, ls.levels[1:], strict=False)]
    assert all(25.0 <= d <= 50.0 for d in steps), steps  # measured 34.4, 36.8, 34.6 mm
    for lm in ls.levels:
        # the canal lies behind the disc (+y in LPS is posterior), in the disc plane
        offset = lm.canal_xyz - lm.disc_xyz
        assert offset[1] > 15.0 and abs(float(np.dot(offset, lm.normal))) < 1e-6


def test_component_labelling_in_the_bounding_box_equals_labelling_the_whole_volume():
    from scipy import ndimage

    from spine_seg.landmarks.components import label_components

    rng = np.random.default_rng(7)
    for shape, box in (((12, 40, 30), (slice(3, 9), slice(10, 31), slice(4, 20))), ((5, 6, 7), (slice(0, 5),) * 3)):
        mask = np.zeros(shape, dtype=bool)
        mask[box] = rng.random(mask[box].shape) < 0.06  # many components, some touching only by a corner
        expected, n_expected = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        cc, n = label_components(mask)
        assert n == n_expected > 1 and cc.shape == shape
        np.testing.assert_array_equal(cc, expected)  # same components, numbered the same way
    cc, n = label_components(np.zeros((4, 5, 6), dtype=bool))
    assert n == 0 and cc.shape == (4, 5, 6) and not cc.any()


def test_canal_levels_that_share_no_plane_are_not_moved():
    """Two canal levels 16 mm apart (a garbage segmentation): each is further than the largest shift from
    their median, so there is no midline; the points stay where measured (they were NaN before)."""
    labels, affine = _column_with_canal_shifts((0, 0, 0, -8, 8))
    canal = SEG_LABELS["spinal_canal"]
    upper = labels[:, : 40 + 36 * 3 - 18]
    upper[upper == canal] = 0
    ls = landmarks_from_labels(labels, affine)
    by_level = {lm.level: lm for lm in ls.levels}
    for lv, x in (("l4_l5", 12.0), ("l5_s1", 28.0)):
        assert by_level[lv].canal_source == "canal_label" and by_level[lv].canal_midline_shift_mm == 0.0
        assert np.isfinite(by_level[lv].canal_xyz).all() and abs(float(by_level[lv].canal_xyz[0]) - x) < 0.3
