"""Dataset506_VB2: real sagittal T2 TSE lumbar MRI with vertebral-body masks T11–L5 (Zukić et al. 2014).

Input: ``NN.mat`` files (MATLAB v5) with ``I`` (uint8, 381 × 381 × 76 or 77) and ``GT`` (uint8, 0 background,
seven vertebral bodies), as copied from github JonathanRamos/fastcleverseg (``ImageDatasets/VBs/VB2``).
Same axis convention as MyoSegmenTUM (:mod:`.Dataset503_MyoSegmenTUM`): axis 0 superior → inferior, axis 1
anterior → posterior, axis 2 across the sagittal slices; isotropic, no spacing stored (≈ 1 mm: a ≈ 38 cm
field of view over 381 voxels, and the lumbar vertebral pitch is 35–38 voxels).

Two traps, both handled here:

* GT label numbers are **not** in anatomical order and differ per file: bodies are named by the
  cranio-caudal order of their centroids, the lowest L5, the highest T11 (:func:`ordered_bodies`);
* ``I`` can have one slice fewer than ``GT`` along axis 2: both are cut to their common slices.

The converter writes the **base label scheme** (:data:`spine_seg.labels.BASE_LABELS`): bodies as
``vertebra``, pseudo-labelled discs between facing endplates and nnU-Net's ignore label where the mask is
silent (:func:`.common.bodies_to_base_labels`), with each volume resliced into 3–5 mm slabs (partial volume)
as clinical sagittal series are. All 17 volumes go to imagesTr; cross-validation folds are in
splits_final.json.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from spine_seg.core.labels import BASE_IGNORE, BASE_LABELS

from .common import (
    ConversionReport,
    bodies_to_base_labels,
    prepare_dataset_folder,
    thick_slices,
    write_case_arrays,
    write_dataset_json,
    write_splits,
)
from .Dataset503_MyoSegmenTUM import read_mat_arrays, to_sagittal_stack

DATASET_ID = 506
DATASET_NAME = "VB2"
#: Isotropic voxel size assumed for VB2 (see the module docstring).
SPACING_MM = 1.0
#: Vertebral bodies of a VB2 mask, head to feet.
VB2_BODIES: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
REFERENCE = (
    "Zukić D. et al., Robust Detection and Segmentation for Diagnosis of Vertebral Diseases Using Routine MR "
    "Images, CGF 33:190-204 (2014); files from github JonathanRamos/fastcleverseg"
)
CITATION = (
    "Zukić D, Vlasák A, Egger J, Hořínek D, Nimsky C, Kolb A. Robust Detection and Segmentation for Diagnosis of "
    "Vertebral Diseases Using Routine MR Images. Computer Graphics Forum 33(6):190-204 (2014)."
)
LICENCE = "cite Zukić et al. 2014; these .mat copies come from a GPL-3.0 repository"
BASE_DATASET_LABELS: dict[str, int] = {**BASE_LABELS, "ignore": BASE_IGNORE}

_FILE = re.compile(r"^(\d+)\.mat$")


def load_vb2(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(image, GT) of one file in the file's axes, cut to their common slices along axis 2."""
    image, gt = read_mat_arrays(path)
    if image.ndim != 3 or gt.ndim != 3 or image.shape[:2] != gt.shape[:2] or abs(image.shape[2] - gt.shape[2]) > 1:
        raise ValueError(f"{path}: I {image.shape} and GT {gt.shape} do not share a grid (one slice apart at most)")
    n = min(image.shape[2], gt.shape[2])
    return image[:, :, :n], gt[:, :, :n]


#: Under VB2's and MyoSegmenTUM's lowest body (L5) lies the L5/S1 disc: this upper band of it is labelled disc
#: (:func:`.common.bodies_to_base_labels`); thinner than any real disc, so it never reaches the sacrum.
L5_S1_BAND_MM = 2.0


def ordered_bodies(gt: np.ndarray, names: tuple[str, ...] = VB2_BODIES) -> list[tuple[str, int]]:
    """(name, GT value) of each body, head to feet by centroid row; the lowest gets the last name."""
    values = [int(v) for v in np.unique(gt) if v != 0]
    if len(values) != len(names):
        raise ValueError(f"expected {len(names)} labelled bodies ({', '.join(names)}), found values {values}")
    rows = {v: float(np.nonzero(gt == v)[0].mean()) for v in values}
    order = sorted(values, key=lambda v: rows[v])
    return list(zip(names, order, strict=True))


def base_case(
    image_file: np.ndarray,
    gt_file: np.ndarray,
    bodies: list[tuple[str, int]],
    thickness: int,
    start: int = 0,
    crop: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """File-layout arrays → ``[k, j, i]`` uint8 image and base labels, resliced into ``thickness``-mm slabs.

    ``crop`` keeps 70 mm in front of and 100 mm behind the bodies (a lumbar sagittal field of view, and a
    third of the file's size)."""
    img = to_sagittal_stack(image_file)
    gt = to_sagittal_stack(gt_file)
    masks = [gt == v for _, v in bodies]
    labels = bodies_to_base_labels(masks, SPACING_MM, disc_below_lowest_mm=L5_S1_BAND_MM)
    if crop:
        i_idx = np.nonzero((gt > 0).any(axis=(0, 1)))[0]
        lo, hi = max(0, int(i_idx.min() - 70 / SPACING_MM)), min(img.shape[2], int(i_idx.max() + 100 / SPACING_MM) + 1)
        img, labels = img[:, :, lo:hi], labels[:, :, lo:hi]
    img, labels = thick_slices(img, labels, thickness, start)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels


def convert_vb2(
    input_dir: str | Path,
    raw_root: str | Path,
    dataset_id: int | None = DATASET_ID,
    *,
    n_folds: int = 2,
    seed: int = 506,
    overwrite: bool = False,
) -> Path:
    """Convert every VB2 ``NN.mat`` to ``raw_root/Dataset506_VB2`` (base labels, 3–5 mm slabs, seeded)."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: no such folder (expected VB2 NN.mat files)")
    paths = sorted(p for p in input_dir.iterdir() if _FILE.match(p.name))
    if not paths:
        raise FileNotFoundError(f"{input_dir}: no NN.mat files")
    out = prepare_dataset_folder(
        raw_root, DATASET_ID if dataset_id is None else int(dataset_id), DATASET_NAME, overwrite=overwrite
    )
    report = ConversionReport(
        dataset=out.name, source=str(input_dir), options={"spacing_mm": SPACING_MM, "n_folds": n_folds, "seed": seed}
    )
    rng = np.random.default_rng(seed)
    for path in paths:
        try:
            image, gt = load_vb2(path)
            bodies = ordered_bodies(gt)
        except ValueError as exc:
            report.skip(path, str(exc))
            continue
        thickness = int(rng.integers(3, 6))
        img, lab = base_case(image, gt, bodies, thickness, int(rng.integers(0, thickness)))
        case_id = f"vb2_{_FILE.match(path.name).group(1)}"  # type: ignore[union-attr]
        write_case_arrays(out, case_id, img, lab, (SPACING_MM, SPACING_MM, float(thickness)))
        report.cases.append(
            {"case_id": case_id, "file": path.name, "thickness_mm": thickness, "bodies": {n: v for n, v in bodies}}
        )
    if not report.cases:
        report.write(out)
        raise ValueError(f"{input_dir}: no volume converted ({len(report.skipped)} skipped)")
    write_dataset_json(
        out,
        channel_names={0: "MRI"},
        labels=BASE_DATASET_LABELS,
        num_training=len(report.cases),
        dataset_name=DATASET_NAME,
        description="VB2 sagittal T2 TSE, vertebral bodies T11-L5 as 'vertebra', "
        "pseudo-discs between facing endplates, "
        "canal/sacrum/unlabelled levels ignored (spineseg base labels).",
        reference=REFERENCE,
        licence=LICENCE,
        citation=CITATION,
        spineseg_spacing_assumed_mm=SPACING_MM,
    )
    ids = [c["case_id"] for c in report.cases]
    write_splits(out, ids, ids, n_folds, seed)
    report.write(out)
    return out
