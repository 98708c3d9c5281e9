"""Dataset501_SPIDER: the SPIDER lumbar MRI dataset (van der Graaf et al. 2024) → spineseg's segmentation labels.

Input, as published on Zenodo (record 10159290)::

    images/<patient>_<sequence>.mha   masks/<patient>_<sequence>.mha   overview.csv

with ``<sequence>`` one of ``t1``, ``t2``, ``t2_SPACE`` (``12_t1.mha``: patient 12, sagittal T1). Each series
becomes one case ``spider_012_t1`` (single channel); folds are grouped by patient.

Labels: SPIDER's values are remapped with :func:`spine_seg.core.labels.spider_to_seg_lut` to
:data:`spine_seg.core.labels.SEG_LABELS` (L1–L5, sacrum, discs L1/L2–L5/S1, spinal canal). Everything else
(T12 and above, their discs, partly visible vertebrae 101–125 by default) becomes background.

SPIDER's vertebra numbering is an assumption made in :mod:`spine_seg.core.labels`;
:func:`check_spider_numbering` tests it on each mask from geometry alone and the converter warns (or, on
request, skips or stops) when a mask contradicts it. See docs/nnunet-datasets.md for what public sources say.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from spine_seg.core.errors import UsageError, UserError
from spine_seg.core.geometry import affine_from_sitk
from spine_seg.core.labels import (
    PARTIAL_MODES,
    SEG_LABELS,
    SPIDER_CANAL,
    SPIDER_DISC_OFFSET,
    SPIDER_PARTIAL_OFFSET,
    SPIDER_VERTEBRA_NUMBER,
    SYNTHETIC_SACRUM,
    spider_disc_label,
    spider_lut,
)
from spine_seg.core.labels import SPIDER_MAX_VERTEBRA as _MAX_VERTEBRA

from .common import (
    DEFAULT_FOLDS,
    DEFAULT_SPLIT_SEED,
    ConversionReport,
    apply_lut,
    label_voxel_counts,
    map_cases,
    prepare_dataset_folder,
    same_geometry,
    write_case,
    write_dataset_json,
    write_splits,
)

log = logging.getLogger(__name__)

DATASET_ID = 501
DATASET_NAME = "SPIDER"
SEQUENCES: tuple[str, ...] = ("t1", "t2", "t2_SPACE")
MISMATCH_POLICIES: tuple[str, ...] = ("warn", "skip", "error")
REFERENCE = "https://doi.org/10.5281/zenodo.10159290"
CITATION = (
    "van der Graaf JW, van Hooff ML, Buckens CFM, et al. Lumbar spine segmentation in MR images: a dataset and a "
    "public benchmark. Sci Data 11, 264 (2024). https://doi.org/10.1038/s41597-024-03090-w"
)
LICENCE = "CC BY 4.0"

_NAME = re.compile(r"^(\d+)_(t1|t2|t2_space)$", re.IGNORECASE)


class SpiderNumberingWarning(UserWarning):
    """A SPIDER mask whose geometry contradicts the vertebra numbering assumed in spine_seg.core.labels."""


class SpiderNumberingError(UserError, ValueError):
    """Raised with ``on_numbering_mismatch="error"``."""


def parse_spider_name(stem: str) -> tuple[int, str]:
    """``12_t2_SPACE`` → (12, "t2_SPACE"); the number before the first ``_`` is the patient."""
    m = _NAME.match(stem)
    if not m:
        raise UsageError(f"{stem!r} is not a SPIDER series name (<patient>_<{'|'.join(SEQUENCES)}>)")
    seq = next(s for s in SEQUENCES if s.lower() == m.group(2).lower())
    return int(m.group(1)), seq


# ---------------------------------------------------------------------------------------------------------
# the numbering check

#: Conventions the check can tell apart, by the offset between a disc's number and the vertebra above it:
#: the vertebra above disc ``200 + m`` is number ``m + offset``.
CONVENTIONS: dict[int, str] = {1: "sacrum=1", 0: "L5=1"}


def assumed_convention() -> str:
    """The convention :mod:`spine_seg.core.labels` encodes, read from its tables (not restated here)."""
    offset = SPIDER_VERTEBRA_NUMBER["L5"] - (spider_disc_label("L5") - SPIDER_DISC_OFFSET)
    return CONVENTIONS.get(offset, f"offset {offset}")


@dataclass(frozen=True)
class NumberingCheck:
    """Result of :func:`check_spider_numbering`.

    ``convention`` is what the geometry supports ("sacrum=1", "L5=1" or "unknown"), ``assumed`` what
    spine_seg.core.labels encodes; ``ok`` is False when any problem contradicts the assumption, ``decided`` whether
    the mask held enough structures to tell the conventions apart.
    """

    ok: bool
    decided: bool
    convention: str
    assumed: str
    problems: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        head = f"numbering: geometry says {self.convention}, spine_seg.core.labels assumes {self.assumed}"
        return head + ("" if not self.problems else ": " + "; ".join(self.problems))


def _mask_and_affine(mask: sitk.Image | np.ndarray, affine: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    if isinstance(mask, sitk.Image):
        return sitk.GetArrayViewFromImage(mask), affine_from_sitk(mask), True
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise UsageError(f"expected a 3-D [k, j, i] mask, got shape {arr.shape}")
    if affine is None:
        return arr, np.eye(4), False
    return arr, np.asarray(affine, dtype=float), True


def check_spider_numbering(
    mask: sitk.Image | np.ndarray,
    affine: np.ndarray | None = None,
    *,
    warn: bool = True,
    min_voxels: int = 10,
) -> NumberingCheck:
    """Test the SPIDER vertebra numbering of :mod:`spine_seg.core.labels` on one mask, from geometry alone.

    ``mask`` is a SimpleITK image (its geometry is used) or a ``[k, j, i]`` array with an optional voxel
    ``(i, j, k)`` → LPS affine. Vertebrae (1–25, partly visible 101–125) and discs (201–225) are reduced to
    centroids; the spine axis is the least-squares direction of vertebra centroid against vertebra number.
    Then:

    * vertebra numbers must increase monotonically along that axis, and cranially (LPS +z) when the mask
      has geometry;
    * every disc is tested against both conventions: under "sacrum=1" (1 = sacrum, 2 = L5) disc 200+m lies
      between vertebrae m and m+1; under "L5=1" (1 = L5, sacrum unlabelled) it lies between m−1 and m, so
      disc 201 lies *below* vertebra 1. The convention with (nearly) all discs consistent wins;
    * under "sacrum=1" label 1 must be the most caudal structure, disc 201 must lie between vertebrae 1 and 2,
      and a fully visible label 1 must be sacrum-like: longer along the spine than the median vertebra
      (extent ratio ≥ 1.2; a lumbar vertebra is ≈ 1).

    A contradiction is reported in ``problems`` and, with ``warn``, raised as a
    :class:`SpiderNumberingWarning` (never an exception).

    Long on purpose: one decision over the mask's geometry, each piece of evidence next to its test.
    """
    arr, aff, has_geometry = _mask_and_affine(mask, affine)
    assumed = assumed_convention()
    k_idx, j_idx, i_idx = np.nonzero(arr)
    values = arr[k_idx, j_idx, i_idx].astype(np.int64)
    lin, shift = aff[:3, :3], aff[:3, 3]

    def number_of(v: int) -> tuple[str, int] | None:
        if 1 <= v <= _MAX_VERTEBRA:
            return "vertebra", v
        if SPIDER_PARTIAL_OFFSET < v <= SPIDER_PARTIAL_OFFSET + _MAX_VERTEBRA:
            return "vertebra", v - SPIDER_PARTIAL_OFFSET
        if SPIDER_DISC_OFFSET < v <= SPIDER_DISC_OFFSET + _MAX_VERTEBRA:
            return "disc", v - SPIDER_DISC_OFFSET
        return None

    if values.size and int(values.min()) < 0:
        raise UsageError(f"mask holds negative values (min {int(values.min())})")
    # centroids in index space (bincount: mask values are small integers, no sort), then to world: the
    # affine map commutes with averaging, so no per-voxel world coordinates are needed
    counts = np.bincount(values)
    sums_ijk = np.stack([np.bincount(values, weights=x, minlength=counts.size) for x in (i_idx, j_idx, k_idx)], axis=1)
    sums = sums_ijk @ lin.T + np.outer(counts, shift)
    uniq = np.nonzero(counts)[0]
    groups: dict[tuple[str, int], list[int]] = {}
    for v in uniq.tolist():
        key = number_of(v)
        if key is not None and counts[v] >= min_voxels:
            groups.setdefault(key, []).append(v)
    centroid = {key: sums[vs].sum(0) / counts[vs].sum() for key, vs in groups.items()}
    vert = {n: c for (kind, n), c in centroid.items() if kind == "vertebra"}
    disc = {n: c for (kind, n), c in centroid.items() if kind == "disc"}
    full = {v for v in uniq.tolist() if 1 <= v <= _MAX_VERTEBRA}

    details: dict[str, Any] = {
        "vertebrae": sorted(vert),
        "discs": sorted(SPIDER_DISC_OFFSET + m for m in disc),
        "partial": sorted(
            v for v in uniq.tolist() if SPIDER_PARTIAL_OFFSET < v <= SPIDER_PARTIAL_OFFSET + _MAX_VERTEBRA
        ),
        "has_geometry": has_geometry,
    }
    problems: list[str] = []

    def result(convention: str, decided: bool) -> NumberingCheck:
        if decided and convention != assumed:
            problems.insert(
                0,
                f"discs sit where {convention} numbering puts them, not where spine_seg.core.labels assumes "
                f"({assumed})",
            )
        chk = NumberingCheck(not problems, decided, convention, assumed, tuple(problems), details)
        if warn and problems:
            warnings.warn(chk.summary(), SpiderNumberingWarning, stacklevel=3)
        return chk

    if len(vert) < 2:
        details["reason"] = f"fewer than 2 vertebrae ({sorted(vert)}): cannot orient the spine"
        return result("unknown", False)

    numbers = np.array(sorted(vert), dtype=float)
    cents = np.array([vert[int(n)] for n in numbers])
    slope = ((numbers - numbers.mean())[:, None] * (cents - cents.mean(0))).sum(0)
    if np.linalg.norm(slope) < 1e-9:
        details["reason"] = "vertebra centroids coincide"
        return result("unknown", False)
    u = slope / np.linalg.norm(slope)
    origin = cents.mean(0)

    def pos(c: np.ndarray) -> float:
        return float(np.dot(c - origin, u))

    s_vert = {n: pos(c) for n, c in vert.items()}
    s_disc = {m: pos(c) for m, c in disc.items()}
    details["position_along_spine"] = {
        **{str(n): round(s, 1) for n, s in s_vert.items()},
        **{str(SPIDER_DISC_OFFSET + m): round(s, 1) for m, s in s_disc.items()},
    }
    ordered = [s_vert[n] for n in sorted(s_vert)]
    if any(b <= a for a, b in zip(ordered, ordered[1:], strict=False)):
        problems.append(
            f"vertebra centroids are not in number order along the spine: {details['position_along_spine']}"
        )
    if has_geometry:
        cranial = float(u[2])  # LPS: +z is superior
        details["numbers_run"] = "cranially" if cranial > 0.3 else "caudally" if cranial < -0.3 else "sideways"
        if cranial < -0.3:
            problems.append("vertebra numbers increase caudally (top-down numbering): vertebra 1 is the most cranial")
        elif cranial <= 0.3:  # a missing or wrong image direction, not evidence about the numbering
            details["note"] = (
                f"spine axis not cranio-caudal in patient space (z {cranial:.2f}): cranial direction untested"
            )

    # disc votes for each convention
    votes: dict[str, list[int]] = {}
    for offset, name in CONVENTIONS.items():
        tested = consistent = 0
        for m, s in s_disc.items():
            upper, lower = m + offset, m + offset - 1
            checks = []
            if upper in s_vert:
                checks.append(s < s_vert[upper])
            if lower in s_vert:
                checks.append(s > s_vert[lower])
            if checks:
                tested += 1
                consistent += all(checks)
        votes[name] = [consistent, tested]
    details["disc_votes"] = {k: f"{c}/{t}" for k, (c, t) in votes.items()}
    frac = {k: (c / t if t else None) for k, (c, t) in votes.items()}
    winners = [k for k, f in frac.items() if f is not None and f >= 0.75]
    losers = [k for k, f in frac.items() if f is None or f <= 0.25]
    decided = len(winners) == 1 and len(losers) == len(CONVENTIONS) - 1
    convention = winners[0] if decided else "unknown"
    if not decided:
        details["reason"] = f"discs do not single out one convention: {details['disc_votes']}"

    # the specific expectations of "sacrum=1"
    if 1 in s_vert:
        others = [s for n, s in s_vert.items() if n != 1] + list(s_disc.values())
        details["label1_most_caudal"] = bool(all(s_vert[1] < s for s in others))
        if 1 in full:
            along = lin.T @ u  # projection on the spine axis per unit step in i, j, k

            def extent(v: int) -> float:
                sel = values == v
                proj = i_idx[sel] * along[0] + j_idx[sel] * along[1] + k_idx[sel] * along[2]
                return float(np.percentile(proj, 99) - np.percentile(proj, 1))

            ext1 = extent(1)
            exts = [extent(n) for n in sorted(full - {1}) if counts[n] >= min_voxels]
            if exts:
                ratio = ext1 / float(np.median(exts))
                details["label1_extent_ratio"] = round(ratio, 2)
                details["label1_sacrum_like"] = bool(ratio >= 1.2)
    if {1, 2} <= set(s_vert) and 1 in s_disc:
        details["disc201_between_1_and_2"] = bool(s_vert[1] < s_disc[1] < s_vert[2])
    if assumed == "sacrum=1":
        if details.get("label1_most_caudal") is False:
            problems.append("label 1 is not the most caudal structure, so it cannot be the sacrum")
        if details.get("disc201_between_1_and_2") is False:
            problems.append("disc 201 does not lie between vertebrae 1 and 2")
        if details.get("label1_sacrum_like") is False:
            problems.append(
                "label 1 is no longer along the spine than a vertebra (extent ratio "
                f"{details['label1_extent_ratio']}): not sacrum-like"
            )
    return result(convention, decided)


# ---------------------------------------------------------------------------------------------------------
# label remapping (the SPIDER → spineseg lookup itself, spider_lut, lives in spine_seg.core.labels)


def dataset_labels(partial: str = "background") -> dict[str, int]:
    """dataset.json labels: spine_seg.core.labels.SEG_LABELS, plus ``ignore`` with ``partial="ignore"``."""
    labels = dict(SEG_LABELS)
    if partial == "ignore":
        labels["ignore"] = len(SEG_LABELS)
    return labels


def _known_spider_value(v: int) -> bool:
    return (
        v == 0
        or v == SPIDER_CANAL
        or v == SYNTHETIC_SACRUM  # spineseg's synthetic masks only: mapped to the sacrum label
        or 1 <= v <= _MAX_VERTEBRA
        or SPIDER_PARTIAL_OFFSET < v <= SPIDER_PARTIAL_OFFSET + _MAX_VERTEBRA
        or SPIDER_DISC_OFFSET < v <= SPIDER_DISC_OFFSET + _MAX_VERTEBRA
    )


# ---------------------------------------------------------------------------------------------------------
# conversion


@dataclass(frozen=True)
class _Job:
    name: str
    case_id: str
    patient: int
    sequence: str
    image: Path
    mask: Path
    out: Path
    test: bool
    partial: str
    policy: str


def _convert_case(job: _Job) -> dict[str, Any]:
    """One series → one case; returns the case record, or {"skipped": reason}."""
    try:
        img = sitk.ReadImage(str(job.image))
        msk = sitk.ReadImage(str(job.mask))
    except RuntimeError as exc:
        return {"name": job.name, "skipped": f"unreadable .mha ({str(exc).strip().splitlines()[-1]})"}
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        return {
            "name": job.name,
            "skipped": f"expected a 3-D single-channel image, got {img.GetDimension()}-D with "
            f"{img.GetNumberOfComponentsPerPixel()} components",
        }
    diff = same_geometry(img, msk, tol=1e-3)
    if diff:
        if img.GetSize() != msk.GetSize():
            return {"name": job.name, "skipped": f"mask grid differs from the image: {diff}"}
        log.warning("%s: mask geometry differs slightly from the image (%s); using the image's", job.name, diff)
    mask = sitk.GetArrayFromImage(msk)
    if not np.issubdtype(mask.dtype, np.integer):
        mask = np.rint(mask).astype(np.int64)
    msk_geo = sitk.GetImageFromArray(mask)
    msk_geo.CopyInformation(img)
    check = check_spider_numbering(msk_geo, warn=False)
    if not check.ok and job.policy == "error":
        raise SpiderNumberingError(f"{job.mask}: {check.summary()}")
    if not check.ok and job.policy == "skip":
        return {"name": job.name, "skipped": check.summary(), "numbering": _check_record(check)}
    unknown = sorted(v for v in np.unique(mask).tolist() if not _known_spider_value(int(v)))
    label = apply_lut(mask, spider_lut(job.partial))
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(img)
    write_case(job.out, job.case_id, [img], lab, test=job.test)
    src = label_voxel_counts(mask)
    return {
        "case_id": job.case_id,
        "name": job.name,
        "patient": job.patient,
        "sequence": job.sequence,
        "test": job.test,
        "size": list(img.GetSize()),
        "spacing_mm": [round(v, 4) for v in img.GetSpacing()],
        "source_values": {str(k): v for k, v in src.items()},
        "label_voxels": {str(k): v for k, v in label_voxel_counts(label).items()},
        "unknown_values": unknown,
        "numbering": _check_record(check),
    }


def _check_record(check: NumberingCheck) -> dict[str, Any]:
    return {
        "ok": check.ok,
        "decided": check.decided,
        "convention": check.convention,
        "problems": list(check.problems),
        "details": check.details,
    }


def _read_overview(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        log.warning("%s not found: converting without it (no subset information)", path)
        return {}
    df = pd.read_csv(path, dtype=str)
    if "new_file_name" not in df.columns:
        raise UsageError(f"{path}: no 'new_file_name' column; has {list(df.columns)[:8]}…")
    return {str(r["new_file_name"]).strip(): r for r in df.to_dict("records")}


def convert_spider(
    input_dir: str | Path,
    raw_root: str | Path,
    dataset_id: int | None = DATASET_ID,
    *,
    sequences: tuple[str, ...] | list[str] | None = None,
    dataset_name: str = DATASET_NAME,
    case_prefix: str = "spider",
    partial: str = "background",
    on_numbering_mismatch: str = "warn",
    validation_as_test: bool = False,
    n_folds: int = DEFAULT_FOLDS,
    split_seed: int = DEFAULT_SPLIT_SEED,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Convert a SPIDER folder (``images/``, ``masks/``, ``overview.csv``) to ``raw_root/Dataset501_SPIDER``.

    ``sequences``: which of t1, t2, t2_SPACE to take (default all). ``partial``: what partly visible
    vertebrae (101–125) become — background (default), keep, or ignore (see :func:`spider_lut`).
    ``on_numbering_mismatch``: warn (default; convert anyway), skip the case, or error — for masks whose
    geometry contradicts spine_seg.core.labels' numbering. ``validation_as_test`` moves overview.csv's
    ``validation`` subset into imagesTs/labelsTs. Folds in splits_final.json are grouped by patient.
    Returns the dataset folder.

    Long on purpose: one linear conversion (find, check, convert, split, report) for one dataset.
    """
    input_dir = Path(input_dir)
    dataset_id = DATASET_ID if dataset_id is None else int(dataset_id)
    if partial not in PARTIAL_MODES:
        raise UsageError(f"unknown partial mode {partial!r}; valid: {list(PARTIAL_MODES)}")
    if on_numbering_mismatch not in MISMATCH_POLICIES:
        raise UsageError(f"unknown on_numbering_mismatch {on_numbering_mismatch!r}; valid: {list(MISMATCH_POLICIES)}")
    wanted = SEQUENCES if sequences is None else tuple(sequences)
    bad = [s for s in wanted if s not in SEQUENCES]
    if bad:
        raise UsageError(f"unknown SPIDER sequence(s) {bad}; valid: {list(SEQUENCES)}")
    images_dir, masks_dir = input_dir / "images", input_dir / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: expected the SPIDER layout images/*.mha, masks/*.mha, overview.csv")
    overview = _read_overview(input_dir / "overview.csv")

    out = prepare_dataset_folder(raw_root, dataset_id, dataset_name, overwrite=overwrite)
    report = ConversionReport(
        dataset=out.name,
        source=str(input_dir),
        options={
            "sequences": list(wanted),
            "partial": partial,
            "on_numbering_mismatch": on_numbering_mismatch,
            "validation_as_test": validation_as_test,
            "n_folds": n_folds,
            "split_seed": split_seed,
            "assumed_numbering": assumed_convention(),
            "lut": {str(k): v for k, v in sorted(spider_lut(partial).items())},
        },
    )
    jobs: list[_Job] = []
    not_wanted = 0
    for image in sorted(images_dir.glob("*.mha")):
        stem = image.name[: -len(".mha")]
        try:
            patient, seq = parse_spider_name(stem)
        except ValueError as exc:
            report.skip(image, str(exc))
            continue
        if seq not in wanted:
            not_wanted += 1
            continue
        mask = masks_dir / image.name
        if not mask.exists():
            report.skip(image, f"no mask {mask}")
            continue
        if overview and stem not in overview:
            log.warning("%s is not listed in overview.csv", stem)
        test = validation_as_test and str(overview.get(stem, {}).get("subset", "")).strip().lower() == "validation"
        jobs.append(
            _Job(
                stem,
                f"{case_prefix}_{patient:03d}_{seq}",
                patient,
                seq,
                image,
                mask,
                out,
                test,
                partial,
                on_numbering_mismatch,
            )
        )
    if not_wanted:
        report.notes.append(f"{not_wanted} series of other sequences left out (wanted {list(wanted)})")
    for res in map_cases(_convert_case, jobs, workers):
        if "skipped" in res:
            report.skip(res["name"], res["skipped"])
        else:
            report.cases.append(res)

    failed = [c["name"] for c in report.cases if not c["numbering"]["ok"]]
    verdicts = Counter(c["numbering"]["convention"] for c in report.cases)
    report.options["numbering_verdicts"] = dict(verdicts)
    if failed:
        msg = (
            f"SPIDER numbering check failed on {len(failed)}/{len(report.cases)} converted masks (geometry says "
            f"{dict(verdicts)}; spine_seg.core.labels assumes {assumed_convention()}), e.g. {failed[:5]}; their "
            f"vertebra labels may be shifted by one level — see docs/nnunet-datasets.md"
        )
        report.note(msg)
        warnings.warn(msg, SpiderNumberingWarning, stacklevel=2)
    skipped_numbering = sum(1 for s in report.skipped if s["reason"].startswith("numbering:"))
    if skipped_numbering:
        report.note(f"{skipped_numbering} series skipped because their numbering contradicts spine_seg.core.labels")
    unknown = sorted({v for c in report.cases for v in c["unknown_values"]})
    if unknown:
        report.note(f"mask values outside SPIDER's scheme mapped to background: {unknown}")

    train = [c for c in report.cases if not c["test"]]
    if not train:
        report.write(out)
        raise UsageError(
            f"{input_dir}: no series converted ({len(report.skipped)} skipped); see {out / 'spineseg_conversion.json'}"
        )
    write_dataset_json(
        out,
        channel_names={0: "MRI"},
        labels=dataset_labels(partial),
        num_training=len(train),
        dataset_name=dataset_name,
        description=(
            "SPIDER sagittal lumbar MRI (T1, T2, T2 SPACE) with vertebrae L1-L5, sacrum, discs L1/L2-L5/S1 and "
            "spinal canal remapped to spineseg's labels (spine_seg.core.labels.SEG_LABELS); one case per series."
        ),
        reference=REFERENCE,
        licence=LICENCE,
        citation=CITATION,
        spineseg_source_labels="SPIDER: vertebrae 1-25, canal 100, partial vertebrae 101-125, discs 201-225",
        spineseg_assumed_numbering=assumed_convention(),
    )
    write_splits(out, [c["case_id"] for c in train], [str(c["patient"]) for c in train], n_folds, split_seed)
    report.write(out)
    log.info(
        "SPIDER: %d cases (%d test) in %s, %d skipped",
        len(report.cases),
        len(report.cases) - len(train),
        out,
        len(report.skipped),
    )
    return out
