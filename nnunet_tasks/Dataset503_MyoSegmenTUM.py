"""Dataset503_MyoSegmenTUM: lumbar vertebral bodies L1–L5 of MyoSegmenTUM spine (Burian et al. 2019).

Input: ``NN.mat`` files (MATLAB v5) with ``I`` (uint8 image, 224 × 224 × 77) and ``GT`` (uint8, 0 background,
1–5 = the L1–L5 vertebral bodies), as copied from github JonathanRamos/fastcleverseg
(``ImageDatasets/VBs/VB3/Isotropic/Matlab/``).

Orientation, read from the data (L1..L5 order checked on every file by :func:`check_vertebra_order`; anterior
and posterior by eye on 01.mat):
axis 0 runs superior → inferior (L1 near row 0), axis 1 anterior → posterior (the canal and the back lie at
high indices), axis 2 across the sagittal slices (left–right). The volume is written as a sagittal stack in
spineseg's ``[k, j, i]`` layout — ``k`` = axis 2, ``j`` = axis 0, ``i`` = axis 1 — with direction columns
``i → +P``, ``j → −S`` (inferior) and ``k = i × j → +R``, the right-handed frame of a DICOM sagittal stack sorted
along its normal. Whether axis 2 really runs towards the patient's right cannot be read from the files
(the vertebral bodies are left–right symmetric); it does not matter for vertebral-body segmentation.

Spacing: the files store none. The volumes are isotropic; anatomy gives ≈ 1 mm (vertebral pitch
37.1 ± 1.7 voxels against ≈ 36–38 mm in adults, body depth 34.7 voxels against ≈ 33–36 mm), so the default
is 1.0 mm isotropic (``spacing_mm``). The origin is (0, 0, 0): there is no patient position.

Split: volumes 01–15 train (imagesTr/labelsTr), 16–20 test (imagesTs/labelsTs), as in the benchmark that
published these files. 18.mat and 19.mat are byte-identical copies of one volume: the converter detects
duplicates by content and, by default, keeps the first copy only (19 is dropped with a warning), so no test
volume is counted twice and no training volume can leak into the test set.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.io

from spine_seg.core.errors import UsageError
from spine_seg.core.labels import SEG_LABELS

from .common import (
    DEFAULT_FOLDS,
    DEFAULT_SPLIT_SEED,
    ConversionReport,
    label_voxel_counts,
    prepare_dataset_folder,
    sitk_image,
    write_case,
    write_dataset_json,
    write_splits,
)

log = logging.getLogger(__name__)

DATASET_ID = 503
DATASET_NAME = "MyoSegmenTUM"
DEFAULT_SPACING_MM = 1.0
DEFAULT_TEST_IDS: tuple[int, ...] = (16, 17, 18, 19, 20)
#: GT value → name; the dataset's label map (L1–L5 take spineseg's label values, see MYO_TO_SEG).
MYO_LABELS: dict[int, str] = {1: "L1", 2: "L2", 3: "L3", 4: "L4", 5: "L5"}
#: dataset.json labels: background and the five vertebral bodies, with spineseg's names and values.
LABELS: dict[str, int] = {"background": 0, **{name: SEG_LABELS[name] for name in MYO_LABELS.values()}}
MYO_TO_SEG: dict[int, int] = {v: SEG_LABELS[name] for v, name in MYO_LABELS.items()}
#: Voxel (i, j, k) direction columns in LPS after the transpose described in the module docstring.
DIRECTION_COLUMNS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]).T  # i → +P, j → −S, k → +R
REFERENCE = "https://osf.io/3j54b/ (MyoSegmenTUM spine); files from github JonathanRamos/fastcleverseg"
CITATION = (
    "Burian E, Rohrmeier A, Schlaeger S, et al. Lumbar muscle and vertebral bodies segmentation of chemical shift "
    "encoding-based water-fat MRI: the reference database MyoSegmenTUM spine. BMC Musculoskelet Disord 20, 152 (2019). "
    "https://doi.org/10.1186/s12891-019-2528-x"
)
LICENCE = (
    "MyoSegmenTUM spine public reference database (cite Burian et al. 2019); these .mat copies come from a "
    "GPL-3.0 repository"
)

_FILE = re.compile(r"^(\d+)\.mat$")


def read_mat_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(``I``, ``GT``) of one MATLAB file as stored (MyoSegmenTUM and VB2 share the layout); an error names the
    file and what is missing."""
    path = Path(path)
    try:
        doc = scipy.io.loadmat(str(path))
    except (OSError, ValueError, NotImplementedError) as exc:
        raise UsageError(f"{path}: cannot read MATLAB file: {exc}") from exc
    missing = [k for k in ("I", "GT") if k not in doc]
    if missing:
        raise UsageError(f"{path}: no {missing} in the file; has {[k for k in doc if not k.startswith('__')]}")
    return np.asarray(doc["I"]), np.asarray(doc["GT"])


def load_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(``I``, ``GT``) of one file, which must share one 3-D grid."""
    image, gt = read_mat_arrays(path)
    if image.ndim != 3 or image.shape != gt.shape:
        raise UsageError(f"{path}: I {image.shape} and GT {gt.shape} must be the same 3-D shape")
    return image, gt


def to_sagittal_stack(volume: np.ndarray) -> np.ndarray:
    """File axes (superior→inferior, anterior→posterior, left–right) → spineseg ``[k, j, i]``."""
    return np.ascontiguousarray(np.transpose(volume, (2, 0, 1)))


def affine(shape_kji: tuple[int, int, int], spacing_mm: float = DEFAULT_SPACING_MM) -> np.ndarray:
    """Voxel (i, j, k) → LPS affine of a converted volume (origin at voxel 0; no patient position exists)."""
    a = np.eye(4)
    a[:3, :3] = DIRECTION_COLUMNS * float(spacing_mm)
    return a


def check_vertebra_order(gt: np.ndarray) -> list[str]:
    """Problems with the L1..L5 order in a file-layout GT: all five present, L1 most superior (lowest row)."""
    problems = []
    rows = {}
    for v, name in MYO_LABELS.items():
        idx = np.nonzero(gt == v)
        if idx[0].size == 0:
            problems.append(f"{name} (value {v}) missing")
            continue
        rows[v] = float(idx[0].mean())
    present = sorted(rows)
    order = [rows[v] for v in present]
    if any(b <= a for a, b in zip(order, order[1:], strict=False)):
        problems.append(
            "vertebrae are not ordered L1 (top) → L5 along axis 0: centroid rows "
            f"{dict(zip([MYO_LABELS[v] for v in present], [round(r, 1) for r in order], strict=True))}"
        )
    unknown = sorted(set(np.unique(gt).tolist()) - {0, *MYO_LABELS})
    if unknown:
        problems.append(f"unexpected GT values {unknown}")
    return problems


def convert_myosegmentum(
    input_dir: str | Path,
    raw_root: str | Path,
    dataset_id: int | None = DATASET_ID,
    *,
    spacing_mm: float = DEFAULT_SPACING_MM,
    test_ids: Iterable[int] | None = DEFAULT_TEST_IDS,
    keep_duplicates: bool = False,
    files: Iterable[str | Path] | None = None,
    dataset_name: str = DATASET_NAME,
    n_folds: int = DEFAULT_FOLDS,
    split_seed: int = DEFAULT_SPLIT_SEED,
    overwrite: bool = False,
) -> Path:
    """Convert MyoSegmenTUM ``NN.mat`` files to ``raw_root/Dataset503_MyoSegmenTUM``.

    ``test_ids`` (default 16–20) go to imagesTs/labelsTs, the rest to imagesTr/labelsTr; ``test_ids=()``
    trains on everything. Files with identical content (18 and 19) are kept once unless
    ``keep_duplicates``. ``files`` restricts the conversion to some files (paths or names in ``input_dir``).
    A file whose L1..L5 order check fails is skipped with the reason. Returns the dataset folder.

    Long on purpose: one linear conversion (read, orient, write, split, report) for one dataset.
    """
    input_dir = Path(input_dir)
    dataset_id = DATASET_ID if dataset_id is None else int(dataset_id)
    if spacing_mm <= 0:
        raise UsageError(f"spacing_mm must be positive, got {spacing_mm}")
    if files is None:
        if not input_dir.is_dir():
            raise FileNotFoundError(f"{input_dir}: no such folder (expected NN.mat files)")
        paths = sorted(p for p in input_dir.iterdir() if _FILE.match(p.name))
    else:
        paths = sorted(Path(f) if Path(f).is_absolute() or Path(f).exists() else input_dir / f for f in files)
    if not paths:
        raise FileNotFoundError(f"{input_dir}: no NN.mat files")
    tests = set() if test_ids is None else {int(t) for t in test_ids}

    out = prepare_dataset_folder(raw_root, dataset_id, dataset_name, overwrite=overwrite)
    report = ConversionReport(
        dataset=out.name,
        source=str(input_dir),
        options={
            "spacing_mm": spacing_mm,
            "test_ids": sorted(tests),
            "keep_duplicates": keep_duplicates,
            "orientation": "k = file axis 2 (→ +R, assumed), j = axis 0 (→ inferior), i = axis 1 (→ posterior)",
            "n_folds": n_folds,
            "split_seed": split_seed,
        },
    )
    seen: dict[str, str] = {}
    for path in paths:
        m = _FILE.match(path.name)
        if not m:
            report.skip(path, "not an NN.mat file name")
            continue
        number = int(m.group(1))
        if not path.exists():
            report.skip(path, "no such file")
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            image, gt = load_mat(path)
        except ValueError as exc:
            report.skip(path, str(exc))
            continue
        content = hashlib.sha256(image.tobytes() + gt.tobytes()).hexdigest()
        duplicate_of = seen.get(content)
        if duplicate_of is not None:
            msg = f"{path.name} is identical to {duplicate_of} (file sha256 {digest[:12]}…)" + (
                "; kept as asked" if keep_duplicates else "; dropped (keep_duplicates=False)"
            )
            report.note(msg)
            if not keep_duplicates:
                report.skipped.append({"item": str(path), "reason": f"duplicate of {duplicate_of}"})
                continue
        seen.setdefault(content, path.name)
        problems = check_vertebra_order(gt)
        if problems:
            report.skip(path, "; ".join(problems))
            continue
        label = np.zeros(gt.shape, dtype=np.uint8)
        for v, target in MYO_TO_SEG.items():
            label[gt == v] = target
        img_kji, lab_kji = to_sagittal_stack(image), to_sagittal_stack(label)
        img = sitk_image(img_kji, affine(img_kji.shape, spacing_mm))
        lab = sitk_image(lab_kji, reference=img)
        case_id = f"myosegmentum_{number:02d}"
        test = number in tests
        write_case(out, case_id, [img], lab, test=test)
        report.cases.append(
            {
                "case_id": case_id,
                "file": path.name,
                "sha256": digest,
                "test": test,
                "duplicate_of": duplicate_of,
                "shape_kji": list(img_kji.shape),
                "label_voxels": {str(k): v for k, v in label_voxel_counts(lab_kji).items()},
            }
        )

    train = [c for c in report.cases if not c["test"]]
    if not train:
        report.write(out)
        raise UsageError(
            f"{input_dir}: no training volume converted ({len(report.cases)} test, {len(report.skipped)} skipped)"
        )
    write_dataset_json(
        out,
        channel_names={0: "MRI"},
        labels=LABELS,
        num_training=len(train),
        dataset_name=dataset_name,
        description=(
            "MyoSegmenTUM spine lumbar MRI, vertebral bodies L1-L5 (spineseg labels L1..L5; discs, sacrum and canal "
            f"absent). Spacing assumed {spacing_mm} mm isotropic; orientation reconstructed, see "
            "docs/nnunet-datasets.md."
        ),
        reference=REFERENCE,
        licence=LICENCE,
        citation=CITATION,
        spineseg_spacing_assumed_mm=spacing_mm,
    )
    write_splits(out, [c["case_id"] for c in train], [c["case_id"] for c in train], n_folds, split_seed)
    report.write(out)
    log.info("MyoSegmenTUM: %d training and %d test volumes in %s", len(train), len(report.cases) - len(train), out)
    return out
