"""Helpers shared by every ``DatasetNNN_Name.py`` converter: folders, cases, dataset.json, splits, report.

An nnU-Net v2 raw dataset written here looks like::

    <raw_root>/Dataset501_SPIDER/
        dataset.json            written by nnunetv2.dataset_conversion.generate_dataset_json
        splits_final.json       K folds grouped by patient/study; nnU-Net's planner copies it to preprocessed/
        imagesTr/<case>_0000.nii.gz   labelsTr/<case>.nii.gz
        imagesTs/<case>_0000.nii.gz   labelsTs/<case>.nii.gz   (only where a dataset has a test split)
        spineseg_conversion.json  what was converted, skipped (with reasons) and checked; nnU-Net ignores it

Images are written with SimpleITK and carry real geometry: spacing in ``ijk`` order (column, row, slice),
origin = the centre of voxel (0, 0, 0) in LPS mm, direction = the affine's columns normalised (see
:mod:`spine_seg.core.geometry`). Arrays are ``[k, j, i]`` as everywhere in spineseg.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from spine_seg.core.errors import UsageError
from spine_seg.core.geometry import set_sitk_geometry

log = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
REPORT_NAME = "spineseg_conversion.json"
SPLITS_NAME = "splits_final.json"
DEFAULT_FOLDS = 5
DEFAULT_SPLIT_SEED = 12345
#: Licence/attribution strings kept next to the converter that uses them; this one is for derived labels.
CONVERTED_BY = "spineseg nnunet_tasks"

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------------------
# dataset folders


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset501_SPIDER``: nnU-Net's folder name for an id (1–999) and a name without spaces."""
    if not 1 <= int(dataset_id) <= 999:
        raise UsageError(f"nnU-Net dataset ids run from 1 to 999, got {dataset_id}")
    if not _NAME_OK.match(name):
        raise UsageError(f"dataset name {name!r} must be letters, digits, '_', '.' or '-' (no spaces)")
    return f"Dataset{int(dataset_id):03d}_{name}"


def prepare_dataset_folder(raw_root: str | Path, dataset_id: int, name: str, *, overwrite: bool = False) -> Path:
    """Create ``raw_root/DatasetNNN_Name`` with ``imagesTr``/``labelsTr``; refuse to clobber anything silently.

    Another folder with the same id but a different name would make nnU-Net's id lookup ambiguous, so it is
    an error. An existing folder of the same name is replaced only with ``overwrite`` and only when it looks
    like a dataset (holds a dataset.json, a report, or nothing).
    """
    raw_root = Path(raw_root)
    folder = raw_root / dataset_folder_name(dataset_id, name)
    if raw_root.is_dir():
        clash = sorted(p.name for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if p.name != folder.name)
        if clash:
            raise UsageError(
                f"{raw_root}: dataset id {dataset_id} is already used by {clash}; pick another id or remove that folder"
            )
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} already exists; pass overwrite=True (--overwrite) to replace it")
        looks_like_dataset = (
            (folder / "dataset.json").exists() or (folder / REPORT_NAME).exists() or not any(folder.iterdir())
        )
        if not looks_like_dataset:
            raise FileExistsError(
                f"{folder} exists but holds no dataset.json; refusing to delete what is not a dataset"
            )
        shutil.rmtree(folder)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir(parents=True)
    return folder


# ---------------------------------------------------------------------------------------------------------
# geometry and images


def sitk_image(
    array_kji: np.ndarray, affine: np.ndarray | None = None, *, reference: sitk.Image | None = None
) -> sitk.Image:
    """A SimpleITK image from a ``[k, j, i]`` array and either an affine or a reference image's geometry."""
    if array_kji.ndim != 3:
        raise UsageError(f"expected a 3-D [k, j, i] array, got shape {array_kji.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    if reference is not None:
        if tuple(reversed(array_kji.shape)) != reference.GetSize():
            raise UsageError(
                f"array shape {array_kji.shape} does not match the reference image size {reference.GetSize()[::-1]}"
            )
        img.CopyInformation(reference)
    elif affine is not None:
        set_sitk_geometry(img, affine)
    return img


def compact_image_dtype(array: np.ndarray) -> np.ndarray:
    """Integer-valued intensities as int16/uint16 when they fit (half the size of float32), else float32."""
    if np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize <= 2:
        return array
    a = np.asarray(array)
    if a.size and np.all(np.isfinite(a)) and np.array_equal(a, np.round(a)):
        lo, hi = float(a.min()), float(a.max())
        if lo >= -32768 and hi <= 32767:
            return a.astype(np.int16)
        if lo >= 0 and hi <= 65535:
            return a.astype(np.uint16)
    return a.astype(np.float32)


def same_geometry(a: sitk.Image, b: sitk.Image, *, tol: float = 1e-4) -> str | None:
    """None when two images share size, spacing, origin and direction; else what differs (for a log line)."""
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    for what, x, y in (
        ("spacing", a.GetSpacing(), b.GetSpacing()),
        ("origin", a.GetOrigin(), b.GetOrigin()),
        ("direction", a.GetDirection(), b.GetDirection()),
    ):
        if not np.allclose(x, y, atol=tol, rtol=tol):
            return f"{what} {np.round(x, 5).tolist()} vs {np.round(y, 5).tolist()}"
    return None


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    test: bool = False


def write_case(
    dataset_dir: Path,
    case_id: str,
    images: Sequence[sitk.Image],
    label: sitk.Image | None,
    *,
    test: bool = False,
) -> CaseFiles:
    """Write ``<case>_0000.nii.gz`` (one file per channel) and ``<case>.nii.gz`` into imagesTr/labelsTr.

    ``test`` puts them into imagesTs/labelsTs. The label is written as uint8 and must share the first
    image's grid exactly (it is given that image's geometry after the check, to drop float noise).
    """
    if not _NAME_OK.match(case_id):
        raise UsageError(f"case id {case_id!r}: letters, digits, '_', '.' or '-' only")
    if not images:
        raise UsageError(f"case {case_id}: no image channels")
    img_dir = dataset_dir / ("imagesTs" if test else "imagesTr")
    lab_dir = dataset_dir / ("labelsTs" if test else "labelsTr")
    img_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, img in enumerate(images):
        if c and same_geometry(images[0], img):
            raise UsageError(
                f"case {case_id}: channel {c} grid differs from channel 0: {same_geometry(images[0], img)}"
            )
        p = img_dir / f"{case_id}_{c:04d}{FILE_ENDING}"
        sitk.WriteImage(img, str(p), useCompression=True)
        paths.append(p)
    label_path = None
    if label is not None:
        diff = same_geometry(images[0], label)
        if diff:
            raise UsageError(f"case {case_id}: label grid differs from the image: {diff}")
        lab = sitk.Cast(label, sitk.sitkUInt8) if label.GetPixelID() != sitk.sitkUInt8 else label
        lab.CopyInformation(images[0])
        lab_dir.mkdir(parents=True, exist_ok=True)
        label_path = lab_dir / f"{case_id}{FILE_ENDING}"
        sitk.WriteImage(lab, str(label_path), useCompression=True)
    return CaseFiles(case_id, tuple(paths), label_path, test)


def lut_array(lut: Mapping[int, int], max_value: int) -> np.ndarray:
    """A dense lookup table (index = source value) with 0 for every value not in ``lut``."""
    table = np.zeros(max(int(max_value), max(lut, default=0)) + 1, dtype=np.uint8)
    for src, dst in lut.items():
        if not 0 <= int(dst) <= 255:
            raise UsageError(f"target label {dst} does not fit uint8")
        table[int(src)] = int(dst)
    return table


def apply_lut(mask: np.ndarray, lut: Mapping[int, int]) -> np.ndarray:
    """Remap integer mask values; anything not in ``lut`` becomes 0 (background)."""
    if mask.size == 0:
        return mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        if not np.array_equal(mask, np.round(mask)):
            raise UsageError("mask holds non-integer values")
        mask = mask.astype(np.int64)
    if int(mask.min()) < 0:
        raise UsageError(f"mask holds negative values (min {int(mask.min())})")
    return lut_array(lut, int(mask.max()))[mask]


# ---------------------------------------------------------------------------------------------------------
# dataset.json and splits


def check_consecutive_labels(labels: Mapping[str, int]) -> None:
    """nnU-Net's rule: background = 0 and label values 0, 1, 2, … without gaps (``ignore`` may come last)."""
    plain = {k: v for k, v in labels.items() if k != "ignore"}
    values = sorted(int(v) for v in plain.values())
    if labels.get("background") != 0:
        raise UsageError(f"labels need 'background': 0; got {dict(labels)}")
    if values != list(range(len(values))):
        raise UsageError(f"labels must be consecutive from 0; got values {values}")
    if "ignore" in labels and int(labels["ignore"]) != len(values):
        raise UsageError(f"the 'ignore' label must be the highest value ({len(values)}), got {labels['ignore']}")


def write_dataset_json(
    dataset_dir: Path,
    *,
    channel_names: Mapping[int, str],
    labels: Mapping[str, int],
    num_training: int,
    dataset_name: str,
    description: str,
    reference: str,
    licence: str,
    citation: str | None = None,
    **extra: Any,
) -> Path:
    """dataset.json through nnU-Net's own ``generate_dataset_json`` (consecutive labels checked first).

    nnunetv2 2.8 stores its ``release`` argument under ``citation``; the citation is put right afterwards.
    """
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    check_consecutive_labels(labels)
    generate_dataset_json(
        str(dataset_dir),
        channel_names={int(k): str(v) for k, v in channel_names.items()},
        labels={str(k): int(v) for k, v in labels.items()},
        num_training_cases=int(num_training),
        file_ending=FILE_ENDING,
        dataset_name=dataset_name,
        reference=reference,
        description=description,
        license=licence,
        converted_by=CONVERTED_BY,
        **extra,
    )
    path = dataset_dir / "dataset.json"
    if citation is not None:
        doc = json.loads(path.read_text())
        doc["citation"] = citation
        path.write_text(json.dumps(doc, indent=4) + "\n")
    return path


def grouped_folds(
    case_ids: Sequence[str],
    groups: Sequence[str],
    n_folds: int = DEFAULT_FOLDS,
    seed: int = DEFAULT_SPLIT_SEED,
) -> list[dict[str, list[str]]]:
    """K folds where every case of a group (patient, study) lands in the same fold; deterministic.

    Groups are shuffled with ``seed``, then dealt largest first to the fold holding the fewest cases (ties →
    lowest fold index), so folds stay balanced in cases. With fewer groups than folds, K drops to the number
    of groups; a single group gives one split that validates on its own training cases (logged).
    """
    if len(case_ids) != len(groups):
        raise UsageError(f"{len(case_ids)} case ids but {len(groups)} groups")
    if len(set(case_ids)) != len(case_ids):
        raise UsageError("duplicate case ids")
    if not case_ids:
        return []
    members: dict[str, list[str]] = {}
    for c, g in zip(case_ids, groups, strict=True):
        members.setdefault(str(g), []).append(c)
    names = sorted(members)
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    if len(names) == 1:
        log.warning("only one group (%s): a single split that validates on its own training cases", names[0])
        all_cases = sorted(case_ids)
        return [{"train": all_cases, "val": all_cases}]
    k = min(int(n_folds), len(names))
    if k < n_folds:
        log.warning("only %d groups: %d folds instead of %d", len(names), k, n_folds)
    if k < 2:
        raise UsageError(f"need at least 2 folds, got {n_folds}")
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in sorted(shuffled, key=lambda g: -len(members[g])):  # stable: equal sizes keep the shuffled order
        target = min(range(k), key=lambda f: (sum(len(members[x]) for x in folds[f]), f))
        folds[target].append(g)
    out = []
    for f in range(k):
        val = sorted(c for g in folds[f] for c in members[g])
        train = sorted(c for ff in range(k) if ff != f for g in folds[ff] for c in members[g])
        out.append({"train": train, "val": val})
    return out


def write_splits(
    dataset_dir: Path,
    case_ids: Sequence[str],
    groups: Sequence[str],
    n_folds: int = DEFAULT_FOLDS,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Path:
    """``splits_final.json`` in the raw dataset folder; nnU-Net's planner copies it into nnUNet_preprocessed."""
    path = dataset_dir / SPLITS_NAME
    path.write_text(json.dumps(grouped_folds(case_ids, groups, n_folds, seed), indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------
# bookkeeping


@dataclass
class ConversionReport:
    """What a converter did; written as ``spineseg_conversion.json`` next to dataset.json."""

    dataset: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def skip(self, item: str, reason: str, *, quiet: bool = False) -> None:
        """Record (and log) an input that was not converted, with the reason."""
        self.skipped.append({"item": str(item), "reason": reason})
        (log.debug if quiet else log.warning)("skipping %s: %s", item, reason)

    def note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("%s", text)

    def write(self, dataset_dir: Path) -> Path:
        doc = {
            "dataset": self.dataset,
            "source": self.source,
            "options": self.options,
            "n_cases": len(self.cases),
            "n_train": sum(1 for c in self.cases if not c.get("test")),
            "n_test": sum(1 for c in self.cases if c.get("test")),
            "n_skipped": len(self.skipped),
            "seconds": round(time.perf_counter() - self.started, 3),
            "notes": self.notes,
            "cases": self.cases,
            "skipped": self.skipped,
        }
        path = dataset_dir / REPORT_NAME
        path.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
        return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def map_cases(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 1) -> list[Any]:
    """``[fn(x) for x in items]``, in worker processes when ``workers > 1`` (``fn`` must be importable)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ProcessPoolExecutor(max_workers=int(workers)) as pool:
        return list(pool.map(fn, items))


def label_voxel_counts(label: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(label, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True)}


# ---------------------------------------------------------------------------------------------------------
# bodies-only masks in the base label scheme


def bodies_to_base_labels(
    bodies: Sequence[np.ndarray],
    spacing_mm: float = 1.0,
    *,
    max_disc_mm: float = 25.0,
    rim_mm: float = 2.0,
    canal_band_mm: float = 35.0,
    canal_halfwidth_mm: float = 22.0,
    disc_below_lowest_mm: float = 0.0,
) -> np.ndarray:
    """Vertebral-body masks (``[k, j, i]``, ``j`` towards the feet, ``i`` posterior; ordered head to feet) →
    :data:`spine_seg.core.labels.BASE_LABELS` with nnU-Net's ignore label where the source does not know.

    A bodies-only mask (VB2, MyoSegmenTUM) says nothing about discs, canal or sacrum; calling those voxels
    background would teach the network that a disc is background. So:

    * **discs** are pseudo-labelled where they must be: in every (k, i) column crossing two consecutive bodies,
      the voxels between the upper body's lower endplate and the lower body's upper endplate (at most
      ``max_disc_mm`` apart) — the intervertebral disc fills that space by definition; a ``rim_mm`` rim
      around each pseudo-disc (the bulge beyond the endplates) is ignored;
    * **ignored**: a band ``canal_band_mm`` deep behind the bodies and discs, ``canal_halfwidth_mm`` either
      side of the midline (canal, cauda, posterior elements), and the spinal column above the highest and
      below the lowest labelled body (unlabelled vertebrae, discs and the sacrum);
    * everything else is background (anterior soft tissue, psoas, vessels, the far lateral slices);
    * with ``disc_below_lowest_mm`` > 0 (the lowest body is L5, so the L5/S1 disc lies under it: VB2,
      MyoSegmenTUM), that many mm under the lowest body's lower endplate are disc too, in the columns under
      its inner part and only where the field of view goes on below. The L5/S1 disc is the one most often
      thin and dark; missed, the count from the sacrum starts a level high. Its lower end is unknown, so
      only the upper band is labelled and the rest stays ignored.

    Long on purpose: the base labels painted from the bodies, step by step on one mask.
    """
    from scipy import ndimage

    from spine_seg.core.labels import BASE_IGNORE, BASE_LABELS

    if not bodies:
        raise UsageError("no vertebral body masks")
    shape = bodies[0].shape
    out = np.zeros(shape, dtype=np.uint8)
    body_any = np.zeros(shape, dtype=bool)
    for b in bodies:
        body_any |= b
    out[body_any] = BASE_LABELS["vertebra"]
    n_j = shape[1]
    jj = np.arange(n_j)[None, :, None]
    disc = np.zeros(shape, dtype=bool)
    for upper, lower in zip(bodies, bodies[1:], strict=False):
        has_u, has_l = upper.any(axis=1), lower.any(axis=1)
        u_bottom = n_j - 1 - np.argmax(upper[:, ::-1, :], axis=1)
        l_top = np.argmax(lower, axis=1)
        gap = l_top - u_bottom
        ok = has_u & has_l & (gap > 1) & (gap * spacing_mm <= max_disc_mm)
        disc |= ok[:, None, :] & (jj > u_bottom[:, None, :]) & (jj < l_top[:, None, :])
    if disc_below_lowest_mm > 0:
        disc |= _band_below(bodies[-1], disc_below_lowest_mm, spacing_mm)
    disc &= ~body_any
    out[disc] = BASE_LABELS["disc"]
    ignore = np.zeros(shape, dtype=bool)
    rim = max(1, int(round(rim_mm / spacing_mm)))
    ignore |= ndimage.binary_dilation(disc, iterations=rim) & ~disc & ~body_any

    column = body_any | disc
    k_idx, j_idx, i_idx = np.nonzero(column)
    k_mid = float(np.mean(k_idx))
    half_k = int(round(canal_halfwidth_mm / spacing_mm))
    k_lo, k_hi = max(0, int(k_mid) - half_k), min(shape[0], int(k_mid) + half_k + 1)
    # posterior band: behind the posterior-most body/disc voxel of each row (rows without one interpolated)
    rows = np.unique(j_idx)
    post = np.full(n_j, -1.0)
    for j in rows:
        post[j] = float(i_idx[j_idx == j].max())
    valid = post >= 0
    post_i = np.interp(np.arange(n_j), np.nonzero(valid)[0], post[valid])
    band = int(round(canal_band_mm / spacing_mm))
    ii = np.arange(shape[2])[None, :]
    in_band = (ii > post_i[:, None]) & (ii <= post_i[:, None] + band)  # [j, i]
    j_top, j_bottom = int(rows.min()), int(rows.max())
    in_band[:j_top] = False
    in_band[j_bottom + 1 :] = False
    ignore[k_lo:k_hi] |= in_band[None]

    def column_box(mask: np.ndarray, front_mm: float, back_mm: float) -> tuple[slice, slice]:
        kk, _, ii_ = np.nonzero(mask)
        pad_k = int(round(10 / spacing_mm))
        ks = slice(max(0, int(kk.min()) - pad_k), min(shape[0], int(kk.max()) + pad_k + 1))
        is_ = slice(
            max(0, int(ii_.min() - front_mm / spacing_mm)), min(shape[2], int(ii_.max() + back_mm / spacing_mm) + 1)
        )
        return ks, is_

    ks, is_ = column_box(bodies[0], 15.0, 45.0)
    ignore[ks, :j_top, is_] = True
    ks, is_ = column_box(bodies[-1], 20.0, 70.0)
    ignore[ks, j_bottom + 1 :, is_] = True
    out[ignore & (out == 0)] = BASE_IGNORE
    return out


def _band_below(body: np.ndarray, band_mm: float, spacing_mm: float) -> np.ndarray:
    """The ``band_mm`` rows under a body's lower endplate (``j`` towards the feet), in the (k, i) columns of
    its inner part (2 mm in from its outline), where the image goes on at least 10 mm further down."""
    from scipy import ndimage

    n_j = body.shape[1]
    has = body.any(axis=1)
    inner = ndimage.binary_erosion(has, iterations=max(1, int(round(2.0 / spacing_mm))))
    bottom = n_j - 1 - np.argmax(body[:, ::-1, :], axis=1)
    rows = max(1, int(round(band_mm / spacing_mm)))
    inner &= bottom + rows + int(round(10.0 / spacing_mm)) < n_j
    jj = np.arange(n_j)[None, :, None]
    return inner[:, None, :] & (jj > bottom[:, None, :]) & (jj <= bottom[:, None, :] + rows)


def thick_slices(
    image: np.ndarray, labels: np.ndarray, thickness: int, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Thin ``[k, j, i]`` slices → slabs of ``thickness`` slices: the image averaged (partial volume, as a
    3–5 mm clinical sagittal slice), the labels of each slab's middle slice."""
    if thickness < 1:
        raise UsageError(f"thickness must be at least 1 slice, got {thickness}")
    n = (image.shape[0] - start) // thickness
    if n < 1:
        raise UsageError(f"{image.shape[0]} slices cannot make a slab of {thickness}")
    img = image[start : start + n * thickness].astype(np.float32).reshape(n, thickness, *image.shape[1:]).mean(axis=1)
    lab = labels[start + thickness // 2 : start + n * thickness : thickness][:n]
    return img, np.ascontiguousarray(lab)


def write_case_arrays(
    dataset_dir: Path,
    case_id: str,
    image_kji: np.ndarray,
    label_kji: np.ndarray,
    spacing_ijk_mm: Sequence[float],
) -> None:
    """One case from arrays, through SimpleITK where it is installed, else nibabel (same files for nnU-Net's
    ``NibabelIO``, which transposes to SimpleITK's axis order). Geometry is the spacing alone: training needs
    no patient position."""
    img_dir, lab_dir = dataset_dir / "imagesTr", dataset_dir / "labelsTr"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(sitk, "WriteImage"):
        for arr, path in (
            (image_kji, img_dir / f"{case_id}_0000{FILE_ENDING}"),
            (label_kji, lab_dir / f"{case_id}{FILE_ENDING}"),
        ):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing(tuple(float(s) for s in spacing_ijk_mm))
            sitk.WriteImage(im, str(path), useCompression=True)
        return
    import nibabel as nib

    aff = np.diag([*(float(s) for s in spacing_ijk_mm), 1.0])
    for arr, path in (
        (image_kji, img_dir / f"{case_id}_0000{FILE_ENDING}"),
        (label_kji, lab_dir / f"{case_id}{FILE_ENDING}"),
    ):
        nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), aff), str(path))
