"""Sacrum and canal pseudo-labels for the bodies-only real volumes of the base dataset.

Why: VB2 and MyoSegmenTUM label vertebral bodies down to L5 and nothing below, so their sacrum is nnU-Net's
ignore label and the network has only ever seen the phantom's sacrum. On a real wide field of view (VB2
shows a young sacrum whose segments look like small vertebrae) it then calls S1 a vertebra and the count
from the sacrum starts a level off. The ground truth does say one thing about the sacrum: whatever bone
lies under the lowest labelled body (L5) is sacrum. So a model that already finds bone (the previous base
model) paints the bone's *shape*, and the ground truth's count gives it its *name*:

* predicted bone (vertebra or sacrum) under L5, in the column below it, becomes ``sacrum``;
* the predicted disc right under L5 (within ``l5_s1_reach_mm`` of its lower endplate) becomes ``disc``
  (L5/S1); predicted discs deeper than the sacrum's top are sacral remnants, so ``sacrum`` too;
* only where the image goes on at least ``MIN_VIEW_BELOW_L5_MM`` under L5 (a sacrum, not a sliver at the edge);
* only voxels the source left ignored change: the real bodies, the pseudo-discs between them and the
  background stay as the converter made them, and what the model does not call bone stays ignored.

The canal is the other structure the real masks never show: it is ignored in a band behind the bodies, so
on a real T2 the network's canal was taught by the phantom alone, and a warm start drifted (a hole in the
canal of the RSNA check study, docs/base-model.md). The labelling model's canal is kept where it is
plainly the canal (:func:`canal_pseudo_labels`): its pieces that lie behind the labelled bodies, near their
midline, if together they run along most of the column. Only the canal is painted, never "not canal": a
canal the labelling model missed stays ignored, not background.

No held-out volume leaks into a fold: with two cross-validation folds, a case held out by fold ``f`` trains
only fold ``1 - f``, and its pseudo-labels come from the labelling model's fold ``1 - f``, which trained on
it and never saw fold ``1 - f``'s held-out cases.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spine_seg.core.errors import UsageError
from spine_seg.core.labels import BASE_IGNORE, BASE_LABELS

VERTEBRA, SACRUM, DISC = BASE_LABELS["vertebra"], BASE_LABELS["sacrum"], BASE_LABELS["disc"]
CANAL = BASE_LABELS["spinal_canal"]
#: What a labelling model may paint, by name (``build_base``'s ``pseudo_labels``).
PSEUDO_LABEL_KINDS = ("sacrum", "canal")

#: The L5/S1 disc starts right under L5; a predicted disc whose top is further down is a sacral remnant.
L5_S1_REACH_MM = 6.0
#: Bone this far under L5 at most is sacrum (S1–S5 are about 100 mm long; the coccyx and beyond are left).
SACRUM_DEPTH_MM = 110.0
#: Paint only where the image shows this much under L5. A sliver of S1 at the lower edge of the field of
#: view is exactly where a network cannot tell S1 from L5 by its look: labelled "sacrum", it taught the
#: network to call the lowest whole body above an edge sacrum (measured: MyoSegmenTUM, whose fields of view
#: end in S1, fell from 71 to 48 of 76 levels named right when its slivers were painted).
MIN_VIEW_BELOW_L5_MM = 50.0
#: A predicted bone piece smaller than this is spill at L5's edge, not a sacral segment (and a canal piece
#: this small is a speck, not a stretch of canal).
MIN_PIECE_MM3 = 400.0
#: The next sacral piece starts at most this far under the one above (a disc or remnant between them).
MAX_STEP_MM = 18.0
#: The predicted canal is kept only when it runs along this share of the labelled column's rows: a short
#: piece is a guess of the labelling model, not the canal.
CANAL_MIN_COVER = 0.6
#: ... and when its middle lies this close (left-right) to the bodies' middle.
CANAL_MAX_OFF_MIDLINE_MM = 12.0
#: ... and when, in this share of the rows they share, it lies behind the column's posterior wall.
CANAL_MIN_BEHIND = 0.9


@dataclass(frozen=True)
class SacrumPseudoLabels:
    """What :func:`sacrum_pseudo_labels` painted on one case (for the conversion report)."""

    sacrum_voxels: int
    disc_voxels: int
    pieces: int
    reason: str = ""


def lowest_body(labels: np.ndarray) -> np.ndarray | None:
    """The lowest vertebral body (``j`` towards the feet) of a base label volume, as a mask."""
    from scipy import ndimage

    comps, n = ndimage.label(labels == VERTEBRA)
    if n == 0:
        return None
    sizes = np.bincount(comps.ravel())[1:]
    big = np.flatnonzero(sizes >= 0.2 * sizes.max()) + 1  # not a stray voxel of a body cut by a slab edge
    j_mean = ndimage.mean(np.broadcast_to(np.arange(labels.shape[1])[None, :, None], labels.shape), comps, big)
    return np.asarray(comps == big[int(np.argmax(j_mean))])


def sacrum_pseudo_labels(
    labels: np.ndarray,
    predicted: np.ndarray,
    spacing_mm: tuple[float, float, float],
) -> tuple[np.ndarray, SacrumPseudoLabels]:
    """Base labels ``[k, j, i]`` (``j`` towards the feet, ``i`` posterior) whose lowest body is L5, with the
    sacrum (and the L5/S1 disc) painted from ``predicted`` (the same grid, base labels) where they were
    ignored; see the module docstring. ``spacing_mm``: (i, j, k) voxel size. Returns the new labels and a
    record; nothing changes when no bone is predicted under L5."""
    from scipy import ndimage

    if labels.shape != predicted.shape:
        raise UsageError(f"labels {labels.shape} and prediction {predicted.shape} differ in shape")
    si, sj, sk = (float(s) for s in spacing_mm)
    l5 = lowest_body(labels)
    if l5 is None:
        return labels, SacrumPseudoLabels(0, 0, 0, "no vertebral body")
    kk, jj, ii = np.nonzero(l5)
    bottom_j = float(np.percentile(jj, 95))
    view_mm = (labels.shape[1] - 1 - bottom_j) * sj
    if view_mm < MIN_VIEW_BELOW_L5_MM:
        return labels, SacrumPseudoLabels(0, 0, 0, f"only {view_mm:.0f} mm in view under L5: sacrum cut by the edge")
    # the column under L5: its slices widened by 10 mm, from 10 mm in front of it to 60 mm behind it (the
    # sacrum slopes backwards as it goes down), from L5's middle to SACRUM_DEPTH_MM under its lower endplate
    k_pad, i_front, i_back = round(10 / sk), round(10 / si), round(60 / si)
    region = np.zeros(labels.shape, dtype=bool)
    region[
        max(0, kk.min() - k_pad) : kk.max() + k_pad + 1,
        int(jj.mean()) : int(bottom_j + SACRUM_DEPTH_MM / sj) + 1,
        max(0, ii.min() - i_front) : ii.max() + i_back + 1,
    ] = True
    region &= ~l5
    editable = region & (labels == BASE_IGNORE)
    voxel_mm3 = si * sj * sk

    bone = ((predicted == VERTEBRA) | (predicted == SACRUM)) & region
    comps, n = ndimage.label(bone)
    found = []
    for c in range(1, n + 1):
        pj = np.nonzero(comps == c)[1]
        if pj.size * voxel_mm3 >= MIN_PIECE_MM3 and pj.mean() > bottom_j + 3 / sj:  # not spill at L5's edge
            found.append((float(np.percentile(pj, 2)), float(np.percentile(pj, 98)), c))
    # the sacrum is one column of segments: take pieces top-down while each starts within MAX_STEP_MM of the
    # last one's lower end (S1 within a disc's height of L5); a piece further off is bowel or a vessel
    sacrum = np.zeros(labels.shape, dtype=bool)
    pieces, reach = 0, bottom_j
    for top, low, c in sorted(found):
        if top - reach > MAX_STEP_MM / sj:
            break
        sacrum |= comps == c
        pieces, reach = pieces + 1, max(reach, low)
    if not pieces:
        return labels, SacrumPseudoLabels(0, 0, 0, "no bone predicted under L5")
    top_j = float(np.percentile(np.nonzero(sacrum)[1], 2))

    disc = np.zeros(labels.shape, dtype=bool)
    comps, n = ndimage.label((predicted == DISC) & region)
    for c in range(1, n + 1):
        piece = comps == c
        pj = np.nonzero(piece)[1]
        if pj.min() <= bottom_j + L5_S1_REACH_MM / sj and pj.mean() < top_j + 3 / sj:
            disc |= piece  # right under L5: the L5/S1 disc
        elif pj.mean() > top_j + 3 / sj:
            sacrum |= piece  # inside the sacrum: a remnant of a sacral disc
    out = labels.copy()
    out[editable & sacrum] = SACRUM
    out[editable & disc & ~sacrum] = DISC
    return out, SacrumPseudoLabels(
        int((editable & sacrum).sum()), int((editable & disc & ~sacrum).sum()), pieces, "painted"
    )


@dataclass(frozen=True)
class CanalPseudoLabels:
    """What :func:`canal_pseudo_labels` painted on one case (for the conversion report)."""

    canal_voxels: int
    cover: float
    reason: str = ""


def canal_pseudo_labels(
    labels: np.ndarray,
    predicted: np.ndarray,
    spacing_mm: tuple[float, float, float],
) -> tuple[np.ndarray, CanalPseudoLabels]:
    """Base labels ``[k, j, i]`` (``j`` towards the feet, ``i`` posterior) with the spinal canal painted from
    ``predicted`` (same grid, base labels) where the source left it ignored.

    A predicted canal piece counts when its middle lies behind the labelled column's (bodies and discs)
    posterior wall in at least :data:`CANAL_MIN_BEHIND` of the rows they share and within
    :data:`CANAL_MAX_OFF_MIDLINE_MM` of the column's middle. A labelling model often breaks the canal into
    pieces on an unfamiliar contrast, so every such piece of :data:`MIN_PIECE_MM3` or more counts, not only
    the largest. They are painted only if together they run along at least :data:`CANAL_MIN_COVER` of the
    column's rows; otherwise nothing changes, and the record says why."""
    from scipy import ndimage

    if labels.shape != predicted.shape:
        raise UsageError(f"labels {labels.shape} and prediction {predicted.shape} differ in shape")
    column = (labels == VERTEBRA) | (labels == DISC)
    if not column.any():
        return labels, CanalPseudoLabels(0, 0.0, "no vertebral body")
    comps, n = ndimage.label(predicted == CANAL)
    if n == 0:
        return labels, CanalPseudoLabels(0, 0.0, "no canal predicted")
    bk, bj, bi = np.nonzero(column)
    rows = np.unique(bj)
    wall = np.full(labels.shape[1], -1.0)
    wall[rows] = ndimage.maximum(bi, bj, rows)  # the column's posterior wall in each of its rows
    k_mid, mm_k = float(bk.mean()), float(spacing_mm[2])
    sizes = np.bincount(comps.ravel())[1:]
    why, kept = "", []
    voxel_mm3 = float(np.prod(spacing_mm))
    for c in np.argsort(-sizes)[: int(np.count_nonzero(sizes * voxel_mm3 >= MIN_PIECE_MM3))] + 1:
        ck, cj, ci = np.nonzero(comps == c)
        off_mm = abs(float(ck.mean()) - k_mid) * mm_k
        shared = np.intersect1d(rows, cj)
        behind = float(np.mean(np.asarray(ndimage.mean(ci, cj, shared)) > wall[shared])) if shared.size else 0.0
        if off_mm > CANAL_MAX_OFF_MIDLINE_MM:
            why = why or f"the predicted canal lies {off_mm:.0f} mm off the bodies' midline"
        elif behind < CANAL_MIN_BEHIND:
            why = why or f"the predicted canal is behind the bodies in {behind:.0%} of rows"
        else:
            kept.append(c)
    canal = np.isin(comps, kept)
    cover = float(np.isin(rows, np.nonzero(canal.any(axis=(0, 2)))[0]).mean())
    if cover < CANAL_MIN_COVER:
        reason = why if not canal.any() else f"the predicted canal runs along {cover:.0%} of the column"
        return labels, CanalPseudoLabels(0, cover, reason)
    paint = canal & (labels == BASE_IGNORE)
    out = labels.copy()
    out[paint] = CANAL
    return out, CanalPseudoLabels(int(paint.sum()), cover, "painted")


def check_labelling_folds(model_folds: list[str]) -> list[str]:
    """The labelling model's numbered folds, which must be the two cross-validation folds (see the module
    docstring: with any other split a held-out volume would leak into a fold through its pseudo-labels)."""
    numbered = sorted(x for x in model_folds if x.isdigit())
    if numbered != ["0", "1"]:
        raise UsageError(
            f"sacrum pseudo-labels need a labelling model with the two cross-validation folds 0 and 1 (so that "
            f"no held-out volume leaks); it has: {', '.join(model_folds) or 'none'}"
        )
    return numbered


def labelling_fold(case_id: str, held_out: Mapping[str, int], model_folds: list[str]) -> str:
    """The labelling model's fold for a case: the one fold that trains on it (see the module docstring)."""
    numbered = check_labelling_folds(model_folds)
    f = held_out.get(case_id)
    if f is None or str(f) not in numbered:
        raise UsageError(f"{case_id}: not in real_folds.json, so no fold is known to have trained on it")
    return next(x for x in numbered if x != str(f))


def check_pseudo_label_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The pseudo-label kinds asked for, each one known (the error lists the valid ones)."""
    bad = [k for k in kinds if k not in PSEUDO_LABEL_KINDS]
    if bad or not kinds:
        raise UsageError(f"unknown pseudo-label kind(s) {bad or list(kinds)}; valid: {', '.join(PSEUDO_LABEL_KINDS)}")
    return tuple(kinds)


def add_pseudo_labels(
    raw: Path, model_dir: Path, device: str = "auto", kinds: Sequence[str] = PSEUDO_LABEL_KINDS
) -> dict[str, Any]:
    """Rewrite the label files of the real cases in an nnU-Net raw base dataset ``raw`` with pseudo-labels
    (``kinds``: sacrum, canal) from the base model ``model_dir``; returns per-case records (written to the
    manifest by the caller). Each case is predicted on its own training image, as nnU-Net will see it."""
    import SimpleITK as sitk

    from spine_seg.segmentation.base_model import model_folds as folds_of
    from spine_seg.segmentation.base_model import nnunet_folder
    from spine_seg.segmentation.predict import NNUNET_AS_IS, SegmentationModel
    from spine_seg_nnunet_tasks.Dataset510_SpineBase import REAL_FOLDS_NAME

    kinds = check_pseudo_label_kinds(kinds)
    held_out = json.loads((raw / REAL_FOLDS_NAME).read_text(encoding="utf-8"))
    have = folds_of(model_dir)
    models: dict[str, SegmentationModel] = {}
    records: dict[str, Any] = {}
    for case_id in sorted(held_out):
        fold = labelling_fold(case_id, held_out, have)
        if fold not in models:
            # nnU-Net's own prediction: the shipped model's recipe (manifest) was labelled so, and must rebuild alike
            models[fold] = SegmentationModel.from_folder(
                nnunet_folder(model_dir), fold=fold, device=device, **NNUNET_AS_IS
            )
        img_path = raw / "imagesTr" / f"{case_id}_0000.nii.gz"
        lab_path = raw / "labelsTr" / f"{case_id}.nii.gz"
        image = sitk.ReadImage(str(img_path))
        label = sitk.ReadImage(str(lab_path))
        spacing: tuple[float, float, float] = tuple(float(s) for s in image.GetSpacing())  # type: ignore[assignment]
        pred = models[fold].predict_array(sitk.GetArrayFromImage(image).astype(np.float32), spacing)
        new = sitk.GetArrayFromImage(label)
        record: dict[str, Any] = {"fold": fold}
        if "sacrum" in kinds:
            new, sacrum = sacrum_pseudo_labels(new, pred, spacing)
            record["sacrum"] = asdict(sacrum)
        if "canal" in kinds:
            new, canal = canal_pseudo_labels(new, pred, spacing)
            record["canal"] = asdict(canal)
        out = sitk.GetImageFromArray(new.astype(np.uint8))
        out.CopyInformation(label)
        sitk.WriteImage(out, str(lab_path), useCompression=True)
        records[case_id] = record
    return records
