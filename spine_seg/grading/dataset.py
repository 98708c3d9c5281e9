"""The training table: one crop per labelled keypoint of a competition-layout folder, and study-grouped folds.

``build_crop_table(DIR)`` reads ``train.csv`` (grades), ``train_label_coordinates.csv`` (keypoints) and
``train_images/<study>/`` (DICOM) [+ ``train_series_descriptions.csv``], cuts each keypoint's crop through
:class:`~spine_seg.grading.crops.CropCache` (so a second run reads the cache) and returns a
:class:`CropTable`: one row per crop with ``study_id, condition, level, group, row_id, label`` (0/1/2 for
normal_mild/moderate/severe, -1 where train.csv leaves the location blank) and the crop
(float16 ``[n_slices, H, W]``). A study that fails (unreadable DICOM, missing folder, bad geometry) is
skipped and its reason kept in ``CropTable.skipped``; the other studies go on.

``assign_folds`` splits STUDIES into K folds (all rows of a study in one fold), stratified by each study's
worst spinal grade and its number of severe grades, deterministic for a given seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spine_seg.core.constants import CONDITION_GROUPS, GROUP_OF_CONDITION, SEVERITIES, parse_row_id, row_id
from spine_seg.core.errors import UsageError
from spine_seg.dicom import load_study
from spine_seg.grading import metric
from spine_seg.grading.crops import DEFAULT_SPECS, CropCache, CropSpec, read_keypoints

log = logging.getLogger(__name__)

SEVERITY_INDEX: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
ROW_COLUMNS: tuple[str, ...] = ("study_id", "condition", "level", "group", "row_id", "label", "crop")


@dataclass
class CropTable:
    """Crops with their labels. ``rows``: one row per crop (see module doc); ``labels``: the metric's long
    label frame (graded locations of all groups, cropped or not) of the studies in the table; ``skipped``:
    study → reason; ``missing``: row ids of the cropped groups graded in train.csv without a crop (no
    keypoint, or the keypoint failed)."""

    rows: pd.DataFrame
    labels: pd.DataFrame
    specs: dict[str, CropSpec]
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def studies(self) -> list[str]:
        return list(dict.fromkeys(self.rows["study_id"]))

    def stack(self, index: Iterable[int] | None = None, dtype: type = np.float32) -> np.ndarray:
        """Crops of the given row positions as one array [N, n_slices, H, W] (float32 unless told)."""
        crops = self.rows["crop"].to_numpy()
        idx = np.arange(len(crops)) if index is None else np.asarray(list(index), dtype=np.int64)
        return np.stack([crops[i] for i in idx]).astype(dtype) if len(idx) else np.zeros((0, 1, 1, 1), dtype)

    def subset(self, groups: Iterable[str] | None = None, studies: Iterable[str] | None = None) -> CropTable:
        """The rows of some condition groups and/or studies (labels follow the studies)."""
        keep = np.ones(len(self.rows), dtype=bool)
        lab = np.ones(len(self.labels), dtype=bool)
        if groups is not None:
            groups = set(groups)
            keep &= self.rows["group"].isin(groups).to_numpy()
        if studies is not None:
            studies = {str(s) for s in studies}
            keep &= self.rows["study_id"].isin(studies).to_numpy()
            lab &= self.labels["study_id"].isin(studies).to_numpy()
        return CropTable(
            self.rows[keep].reset_index(drop=True),
            self.labels[lab].reset_index(drop=True),
            dict(self.specs),
            dict(self.skipped),
            [r for r in self.missing if studies is None or parse_row_id(r)[0] in studies],
        )

    def summary(self) -> str:
        counts = self.rows[self.rows.label >= 0].groupby("group")["label"].value_counts().unstack(fill_value=0)
        parts = [
            f"{g}: "
            + "/".join(str(int(counts.loc[g].get(i, 0))) if g in counts.index else "0" for i in range(len(SEVERITIES)))
            for g in CONDITION_GROUPS
        ]
        return (
            f"{len(self.studies)} studies, {len(self.rows)} crops ({int((self.rows.label < 0).sum())} ungraded); "
            f"labels n/m/s {'; '.join(parts)}; {len(self.skipped)} studies skipped, {len(self.missing)} graded "
            "locations without a crop"
        )


def _study_labels(train_csv: Path) -> tuple[pd.DataFrame, list[str]]:
    df = metric.read_csv(train_csv)
    labels = metric.labels_from_train_csv(df, train_csv)
    return labels, [str(s) for s in df["study_id"]]


def build_crop_table(
    data_dir: str | Path,
    cache_dir: str | Path,
    specs: Mapping[str, CropSpec] = DEFAULT_SPECS,
    studies: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    images_dir: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CropTable:
    """Crops and labels of a competition-layout folder (see module doc).

    ``cache_dir`` holds the :class:`CropCache` (put it under the run's output: the data folder may be
    read-only); ``studies`` limits the studies (default:
    every study in train.csv); ``groups`` limits the condition groups cropped; ``images_dir`` overrides
    ``DATA_DIR/train_images``. ``progress(i, n, study_id)`` is called after each study.

    Long on purpose: one pass over the studies, each crop and label checked where it is read.
    """
    data_dir = Path(data_dir)
    train_csv = data_dir / "train.csv"
    coords_csv = data_dir / "train_label_coordinates.csv"
    for p in (train_csv, coords_csv):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: missing; --data must be a competition-layout folder (train.csv, train_label_coordinates.csv, "
                "train_images/)"
            )
    images = Path(images_dir) if images_dir else data_dir / "train_images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: missing image folder (train_images/<study>/<series>/<instance>.dcm)")
    listed = data_dir / "train_series_descriptions.csv"
    series_csv: Path | None = listed if listed.is_file() else None

    groups = tuple(CONDITION_GROUPS) if groups is None else tuple(groups)
    bad = [g for g in groups if g not in CONDITION_GROUPS]
    if bad:
        raise UsageError(f"unknown condition groups {bad}; valid: {list(CONDITION_GROUPS)}")
    specs = {g: specs[g] for g in groups}
    labels, all_ids = _study_labels(train_csv)
    keypoints = read_keypoints(coords_csv)
    keypoints = keypoints[keypoints.condition.map(GROUP_OF_CONDITION).isin(groups)]
    wanted = all_ids if studies is None else [str(s) for s in studies]
    unknown = sorted(set(wanted) - set(all_ids))
    if unknown:
        raise UsageError(f"{train_csv}: studies not in train.csv: {unknown[:5]}")
    grade = {r: SEVERITY_INDEX[s] for r, s in zip(labels.row_id, labels.severity, strict=True)}

    cache = CropCache(cache_dir)
    records: list[tuple] = []
    skipped: dict[str, str] = {}
    done: list[str] = []
    for i, sid in enumerate(wanted):
        try:
            folder = images / sid
            if not folder.is_dir():
                raise FileNotFoundError(f"no image folder {folder}")
            kp = keypoints[keypoints.study_id == sid]
            if kp.empty:
                raise UsageError("no keypoints in train_label_coordinates.csv")
            study = load_study(folder, series_csv)
            crops = cache.get(study, kp, specs)
            if not crops:
                raise UsageError(
                    "no crop could be cut: " + "; ".join(cache.manifest.get(sid, {}).get("warnings", [])[:3])
                )
        except Exception as exc:  # noqa: BLE001 - one bad study must not stop a cohort; the reason is kept
            reason = f"{type(exc).__name__}: {exc}"
            skipped[sid] = reason
            log.warning("study %s skipped: %s", sid, reason)
        else:
            for (condition, level), arr in crops.items():
                rid = row_id(sid, condition, level)
                records.append(
                    (
                        sid,
                        condition,
                        level,
                        GROUP_OF_CONDITION[condition],
                        rid,
                        grade.get(rid, -1),
                        arr.astype(np.float16),
                    )
                )
            for w in cache.manifest.get(sid, {}).get("warnings", []):
                log.info("study %s: %s", sid, w)
            done.append(sid)
        if progress is not None:
            progress(i + 1, len(wanted), sid)

    rows = pd.DataFrame.from_records(records, columns=list(ROW_COLUMNS))
    rows["label"] = rows["label"].astype(np.int64)
    # labels of every group are kept: the official metric needs all three (uncropped groups get the prior)
    labels = labels[labels.study_id.isin(done)].reset_index(drop=True)
    have = set(rows.row_id)
    cropped = labels.condition.map(GROUP_OF_CONDITION).isin(groups)
    missing = [r for r in labels.row_id[cropped] if r not in have]
    table = CropTable(rows, labels, dict(specs), skipped, missing)
    log.info("crop table: %s", table.summary())
    return table


# ----------------------------------------------------------------------------------------------- folds


def _study_strata(labels: pd.DataFrame, studies: list[str]) -> dict[str, tuple[int, int]]:
    sev = labels.severity.map(SEVERITY_INDEX)
    spinal = labels.condition.map(GROUP_OF_CONDITION).eq("spinal")
    worst_spinal = sev[spinal].groupby(labels.study_id[spinal]).max()
    n_severe = sev.eq(2).groupby(labels.study_id).sum()
    return {s: (int(worst_spinal.get(s, -1)), int(min(n_severe.get(s, 0), 3))) for s in studies}


def assign_folds(labels: pd.DataFrame, k: int, seed: int = 0, studies: Iterable[str] | None = None) -> dict[str, int]:
    """study_id → fold in [0, k): study-grouped, stratified by (worst spinal grade, #severe grades ≤ 3).

    Within each stratum (in a fixed order) the studies are shuffled with ``seed`` and each goes to the fold
    holding the fewest studies of that stratum, ties to the fold with the fewest studies overall, then the
    lowest index: fold sizes differ by at most one and every stratum is spread evenly.
    """
    studies = sorted(dict.fromkeys(str(s) for s in (labels.study_id if studies is None else studies)))
    if k < 2:
        raise UsageError(f"folds must be at least 2 (got {k})")
    if k > len(studies):
        raise UsageError(f"{k} folds need at least {k} studies; the table has {len(studies)}")
    strata = _study_strata(labels, studies)
    rng = np.random.default_rng(seed)
    total = np.zeros(k, dtype=np.int64)
    out: dict[str, int] = {}
    for key in sorted(set(strata.values()), reverse=True):
        members = [s for s in studies if strata[s] == key]
        members = [members[i] for i in rng.permutation(len(members))]
        here = np.zeros(k, dtype=np.int64)
        for s in members:
            fold = min(range(k), key=lambda f: (here[f], total[f], f))
            out[s] = fold
            here[fold] += 1
            total[fold] += 1
    return out


__all__ = ["ROW_COLUMNS", "SEVERITY_INDEX", "CropTable", "assign_folds", "build_crop_table"]
