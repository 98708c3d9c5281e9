"""Sacrum and canal pseudo-labels: painted only where the source said nothing; only bone in one column under
L5, only a canal that runs behind the bodies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spine_seg.core.errors import UsageError
from spine_seg.core.labels import BASE_IGNORE, BASE_LABELS
from spine_seg.segmentation.pseudo_labels import (
    canal_pseudo_labels,
    check_pseudo_label_kinds,
    labelling_fold,
    lowest_body,
    sacrum_pseudo_labels,
)

V, S, D = BASE_LABELS["vertebra"], BASE_LABELS["sacrum"], BASE_LABELS["disc"]
C = BASE_LABELS["spinal_canal"]
SPACING = (1.0, 1.0, 1.0)


def column_case() -> tuple[np.ndarray, np.ndarray]:
    """Two bodies (L4 rows 10–29, L5 rows 40–59) and the ignored region under them; a prediction with the
    L5/S1 disc, S1 (called a vertebra), a remnant disc, S2, a blob far under S2 and a spill at L5's edge."""
    labels = np.zeros((12, 160, 60), dtype=np.uint8)
    labels[2:10, 10:30, 20:40] = V
    labels[2:10, 30:40, 20:40] = D
    labels[2:10, 40:60, 20:40] = V
    labels[:, 60:, 10:55] = BASE_IGNORE  # the converter's box under the lowest body
    pred = labels.copy()
    pred[pred == BASE_IGNORE] = 0
    pred[2:10, 60:66, 22:38] = D  # L5/S1
    pred[2:10, 66:86, 22:40] = V  # S1, as a vertebra: the mistake the pseudo-labels mend
    pred[2:10, 86:89, 24:40] = D  # S1/S2 remnant
    pred[2:10, 89:104, 26:42] = V  # S2
    pred[2:10, 140:150, 26:40] = V  # 36 mm under S2: bowel, not sacrum
    pred[2:10, 60:61, 38:40] = V  # spill under L5's edge
    return labels, pred


def test_bone_under_l5_becomes_sacrum_and_the_disc_under_it_disc():
    labels, pred = column_case()
    out, rec = sacrum_pseudo_labels(labels, pred, SPACING)
    assert rec.reason == "painted" and rec.pieces == 2
    assert (out[2:10, 66:86, 22:40] == S).all() and (out[2:10, 89:104, 26:42] == S).all()
    assert (out[2:10, 86:89, 24:40] == S).all()  # the remnant lies inside the sacrum
    assert (out[2:10, 60:66, 22:38] == D).all()
    assert (out[2:10, 140:150, 26:40] == BASE_IGNORE).all()  # beyond one step: left unknown
    keep = labels != BASE_IGNORE
    assert np.array_equal(out[keep], labels[keep])  # the source's labels never change
    assert not ((out == BASE_IGNORE) & (labels != BASE_IGNORE)).any()


def test_nothing_changes_without_bone_under_l5():
    labels, pred = column_case()
    pred[:, 60:] = 0
    out, rec = sacrum_pseudo_labels(labels, pred, SPACING)
    assert rec.pieces == 0 and "no bone" in rec.reason
    assert np.array_equal(out, labels)


def test_a_sacrum_cut_by_the_edge_is_left_unknown():
    labels, pred = column_case()
    out, rec = sacrum_pseudo_labels(labels[:, :100], pred[:, :100], SPACING)  # 40 mm under L5 in view
    assert rec.pieces == 0 and "cut by the edge" in rec.reason
    assert np.array_equal(out, labels[:, :100])


def test_lowest_body_is_the_lowest_big_one():
    labels, _ = column_case()
    labels[5, 150, 30] = V  # a stray voxel lower still
    l5 = lowest_body(labels)
    assert l5 is not None and l5[2:10, 40:60, 20:40].all() and not l5[:, :40].any() and not l5[5, 150, 30]
    assert lowest_body(np.zeros((3, 3, 3), dtype=np.uint8)) is None


def test_shapes_must_match():
    labels, pred = column_case()
    with pytest.raises(UsageError, match="differ in shape"):
        sacrum_pseudo_labels(labels, pred[:, :-1], SPACING)


def canal_case() -> tuple[np.ndarray, np.ndarray]:
    """The column of :func:`column_case` (rows 10–59, front to back columns 20–39, slices 2–9) with the
    converter's ignored band behind it, and a prediction whose canal runs behind the column (rows 5–64,
    columns 42–49, slices 4–7) plus a small canal blob in the ignored band far from it."""
    labels, _ = column_case()
    labels[:, 10:60, 40:58] = BASE_IGNORE  # the band behind the bodies and discs
    pred = labels.copy()
    pred[pred == BASE_IGNORE] = 0
    pred[4:8, 5:65, 42:50] = C
    pred[0:2, 20:22, 55:57] = C  # a stray piece
    return labels, pred


def test_the_canal_behind_the_bodies_is_painted_where_ignored():
    labels, pred = canal_case()
    out, rec = canal_pseudo_labels(labels, pred, SPACING)
    assert rec.reason == "painted" and rec.cover == 1.0
    assert (out[4:8, 10:60, 42:50] == C).all()  # the tube, where the band was ignored
    assert (out[4:8, 60:65, 42:50] == C).all()  # under the column: the box there was ignored too
    assert (out[4:8, 5:10, 42:50] == 0).all()  # above it the source said background: that stays
    assert (out[0:2, 20:22, 55:57] == BASE_IGNORE).all()  # the stray piece is not the canal
    assert rec.canal_voxels == int((out == C).sum())
    keep = labels != BASE_IGNORE
    assert np.array_equal(out[keep], labels[keep])
    assert set(np.unique(out[out != labels])) == {C}  # only the canal is painted, never "not canal"


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ((slice(4, 8), slice(5, 25), slice(42, 50)), "runs along"),  # a piece along a third of the column
        ((slice(4, 8), slice(5, 65), slice(8, 16)), "behind the bodies"),  # in front of them: a vessel
        ((slice(0, 2), slice(5, 65), slice(42, 50)), "off the bodies' midline"),  # behind the far edge
    ],
    ids=["short", "in-front", "off-midline"],
)
def test_a_canal_that_is_not_plainly_the_canal_is_left_unknown(where, why):
    labels, pred = canal_case()
    pred[pred == C] = 0
    pred[where] = C
    out, rec = canal_pseudo_labels(labels, pred, (1.0, 1.0, 5.0))  # 5 mm slices: slice 0-1 is 20 mm off
    assert rec.canal_voxels == 0 and why in rec.reason, rec
    assert np.array_equal(out, labels)


def test_no_predicted_canal_changes_nothing():
    labels, pred = canal_case()
    pred[pred == C] = 0
    out, rec = canal_pseudo_labels(labels, pred, SPACING)
    assert rec.reason == "no canal predicted" and np.array_equal(out, labels)


def test_unknown_pseudo_label_kind_lists_the_valid_ones():
    assert check_pseudo_label_kinds(["canal"]) == ("canal",)
    with pytest.raises(UsageError, match="unknown pseudo-label kind.*'discs'.*valid: sacrum, canal"):
        check_pseudo_label_kinds(["sacrum", "discs"])


def test_each_case_is_labelled_by_the_fold_that_trains_on_it():
    held = {"vb2_01": 0, "vb2_02": 1}
    assert labelling_fold("vb2_01", held, ["0", "1"]) == "1"
    assert labelling_fold("vb2_02", held, ["0", "1"]) == "0"
    with pytest.raises(UsageError, match="folds 0 and 1.*it has: all"):
        labelling_fold("vb2_01", held, ["all"])
    with pytest.raises(UsageError, match="vb2_09: not in real_folds.json"):
        labelling_fold("vb2_09", held, ["0", "1"])


def test_shipped_model_paints_a_real_sacrum_and_canal(tmp_path: Path, shared_data: Path):
    """One VB2 volume through the converter and the shipped model: sacrum appears under L5 only, the canal
    behind the bodies only, and nothing the source labelled changes."""
    import SimpleITK as sitk

    from spine_seg.segmentation.base_model import shipped_base_model
    from spine_seg.segmentation.pseudo_labels import add_pseudo_labels
    from spine_seg_nnunet_tasks import Dataset506_VB2 as vb2
    from spine_seg_nnunet_tasks.common import write_case_arrays

    base = shipped_base_model()
    assert base is not None
    path = sorted((shared_data / "vb2").glob("*.mat"))[1]
    image, gt = vb2.load_vb2(path)
    img, lab = vb2.base_case(image, gt, vb2.ordered_bodies(gt), 4, 0)
    write_case_arrays(tmp_path, "vb2_x", img, lab, (vb2.SPACING_MM, vb2.SPACING_MM, 4.0))
    (tmp_path / "real_folds.json").write_text(json.dumps({"vb2_x": 0}))
    records = add_pseudo_labels(tmp_path, base, "cpu")
    rec = records["vb2_x"]
    assert rec["fold"] == "1" and rec["sacrum"]["sacrum_voxels"] > 500 and rec["canal"]["canal_voxels"] > 1000
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labelsTr" / "vb2_x.nii.gz")))
    l5 = lowest_body(lab)
    assert l5 is not None
    sacrum_j = np.nonzero(out == S)[1]
    assert sacrum_j.min() > np.nonzero(l5)[1].mean()  # under L5, never above it
    bodies = lab == V
    for j in np.unique(np.nonzero(out == C)[1]):
        if bodies[:, j].any():  # in each row beside a body, the canal lies behind it
            assert np.nonzero(out[:, j] == C)[1].mean() > np.nonzero(bodies[:, j])[1].mean()
    keep = lab != BASE_IGNORE
    assert np.array_equal(out[keep], lab[keep])
