"""``predict``: a DICOM study folder → graded findings, and a batch of them → a submission and reports.

Stages per study (each timed, each failure named): ingest (headers, series kinds, stacks) → segment the
Sagittal T2/STIR with the bundle's nnU-Net → landmarks from the label volume → project them into Sagittal
T1 (foramina) and Axial T2 (slice per level) → crops around the projected points → grading ensemble, with
the Axial T2 fallback CNN for subarticular rows whose axial landmarks are missing or unsure → 25 rows.

Fallbacks, each recorded in ``StudyResult.fallbacks`` and in each row's ``source``:

* no Sagittal T2/STIR, or a segmentation without a usable disc: no landmarks, so every row comes from the
  bundle's training prior (``prior``); nothing is guessed from the other series;
* a level the landmarks do not find: its five rows from the prior;
* no Sagittal T1, or a foramen outside it: those foraminal rows from the prior;
* no Axial T2, a level the axial series does not reach, or an unsure level (confidence below
  ``AXIAL_MIN_CONFIDENCE``, or level names unsure): its subarticular rows from the axial fallback CNN
  (``axial_fallback``), which picks the axial slices nearest the sagittal level point and needs no axial
  landmark; where it has no slice within its reach (or the bundle has none, or it did not beat the prior
  in its own validation), from the prior.

Batch (``predict_batch``): a folder of study folders (the competition's ``test_images``) or one study
folder. Every file is written atomically (temporary file + rename), ``result.json`` last, so a study whose
``result.json`` exists is finished and a re-run skips it (resume). A study that fails is written to
``errors.csv`` with its stage and reason; its rows in ``submission.csv`` come from the prior, so the
submission stays complete, and the batch goes on. Where the studies run is the engine's choice
(``spine_seg.engines``: this process, or Ray workers); each study is :func:`run_study` either way, and
discovery, resume, ``submission.csv`` and ``errors.csv`` stay in ``predict_batch``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from spine_seg.bundle import ModelBundle, load_bundle, package_versions
from spine_seg.core import geometry, textio
from spine_seg.core.atomic import atomic_write, atomic_write_text
from spine_seg.core.constants import CONDITIONS, GROUP_OF_CONDITION, LEVELS, SIDES, SeriesKind, row_id
from spine_seg.dicom import DicomError, Series, Study, load_study, read_series_csv
from spine_seg.dicom.discover import find_study_folders
from spine_seg.dicom_out import DICOM_DIR, SEG_FILE, SR_FILE
from spine_seg.engines import MissingDependencyError, WorkerStartError
from spine_seg.landmarks import LandmarkSet, disc_frame
from spine_seg.landmarks.project import StudyProjection, project_landmarks
from spine_seg.result import (
    SOURCE_FALLBACK,
    SOURCE_MODEL,
    SOURCE_PRIOR,
    CropSource,
    StudyResult,
    submission_rows_from_result_json,
)

log = logging.getLogger(__name__)

#: The spinal crop's centre: this fraction of the way from the disc centroid to the canal point, so the
#: crop holds the posterior disc margin and the canal (where the competition's spinal points are placed).
SPINAL_POINT_FRACTION = 0.5
#: Subarticular points: the canal point ± this much towards the patient's left/right in the disc plane.
#: The lateral recesses of study 100206310 lie 5.6–8.8 mm (mean 6.9) either side of the midline between
#: them; the phantom's ±(canal half-width − 3 mm) ≈ 7–9 mm.
SUBARTICULAR_OFFSET_MM = 7.0
#: Below this landmark confidence a level's axial crops are not trusted: the axial fallback grades it.
AXIAL_MIN_CONFIDENCE = 0.5
STAGES: tuple[str, ...] = ("ingest", "segment", "landmarks", "project", "crop", "grade")
RESULT_JSON = "result.json"
REPORT_PNG = "report.png"
SEGMENTATION_NII = "segmentation.nii.gz"
SUBMISSION_CSV = "submission.csv"
ERRORS_CSV = "errors.csv"
ERROR_COLUMNS: tuple[str, ...] = ("study", "folder", "stage", "error", "submission_rows")

ProgressCallback = Callable[[str, str], None]  # (study, stage)


class StageError(RuntimeError):
    """A study failed in one stage; ``stage`` says which, the message says why."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


# ---------------------------------------------------------------------------------------------------------
# geometry of the crop points


def subarticular_points(canal_xyz_lps_mm: np.ndarray, normal_lps: np.ndarray,
                        offset_mm: float = SUBARTICULAR_OFFSET_MM) -> dict[str, np.ndarray]:
    """Left and right lateral-recess points of a level: the canal point ± ``offset_mm`` along the patient's
    left–right axis kept in the disc plane (+x in LPS is the patient's left)."""
    _, _, left = disc_frame(normal_lps)
    c = np.asarray(canal_xyz_lps_mm, dtype=float)
    return {"left": c + offset_mm * left, "right": c - offset_mm * left}


def spinal_point(disc_xyz_lps_mm: np.ndarray, canal_xyz_lps_mm: np.ndarray,
                 fraction: float = SPINAL_POINT_FRACTION) -> np.ndarray:
    d, c = np.asarray(disc_xyz_lps_mm, dtype=float), np.asarray(canal_xyz_lps_mm, dtype=float)
    return d + fraction * (c - d)


# ---------------------------------------------------------------------------------------------------------
# one study


def _segmentation_stack(study: Study):
    """The Sagittal T2/STIR stack to segment: the series with most slices, its largest stack."""
    series = study.series_of_kind(SeriesKind.SAGITTAL_T2)
    if not series:
        return None, None
    s = max(series, key=lambda x: (x.n_slices, x.series_id))
    return s, max(s.stacks, key=lambda st: (st.n_slices, -st.index))


@contextlib.contextmanager
def _stage(name: str, timings: dict[str, float], progress: ProgressCallback | None, study: str) -> Iterator[None]:
    if progress is not None:
        progress(study, name)
    t0 = time.perf_counter()
    try:
        yield
    except StageError:
        raise
    except (DicomError, OSError, ValueError, KeyError, RuntimeError, IndexError) as exc:
        raise StageError(name, f"{type(exc).__name__}: {exc}") from exc
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


#: Default cap on the voxels nnU-Net's resampling of one stack may produce (2**27 ≈ 134 M: a 0.5 mm grid over
#: 30 × 512 × 512 mm is 16 M; the real study's Sagittal T2 is 3.7 M). Override: $SPINESEG_MAX_RESAMPLED_VOXELS.
MAX_RESAMPLED_VOXELS = 2**27


def max_resampled_voxels() -> int:
    """The resampling budget in voxels ($SPINESEG_MAX_RESAMPLED_VOXELS, else :data:`MAX_RESAMPLED_VOXELS`)."""
    raw = os.environ.get("SPINESEG_MAX_RESAMPLED_VOXELS", "")
    try:
        return int(float(raw)) if raw.strip() else MAX_RESAMPLED_VOXELS
    except ValueError:
        log.warning("SPINESEG_MAX_RESAMPLED_VOXELS=%r is not a number; using %d", raw, MAX_RESAMPLED_VOXELS)
        return MAX_RESAMPLED_VOXELS


def model_target_spacing(seg_model: Any) -> tuple[float, ...] | None:
    """The voxel size (array order k, j, i; in-plane j, i only for a 2d model) nnU-Net resamples a stack to,
    read from the loaded model's plans; None for a model that does not say (a stand-in in tests)."""
    manager = getattr(getattr(seg_model, "predictor", None), "configuration_manager", None)
    spacing = getattr(manager, "spacing", None)
    if spacing is None:
        return None
    try:
        return tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        return None


def check_segmentation_budget(seg_model: Any, stack: Any) -> None:
    """Refuse a stack whose resampling to the model's spacing would exceed the budget, before nnU-Net allocates
    (:func:`spine_seg.core.geometry.check_resample_budget`): a decimal slip in a spacing tag must fail, not hang."""
    target = model_target_spacing(seg_model)
    if target is None:
        return
    geometry.check_resample_budget(stack.shape, tuple(reversed(stack.spacing_mm)), target, max_resampled_voxels(),
                                   what=f"series {stack.series_id} stack {stack.index}")


class Predictor:
    """A bundle's models loaded once, applied to many studies (``predict_study`` wraps one call)."""

    def __init__(self, bundle: ModelBundle | str | Path, device: str = "auto"):
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.device = device
        t0 = time.perf_counter()
        self.seg_model = self.bundle.segmentation_model(device)
        self.ensemble = self.bundle.ensemble(device)
        fb = self.bundle.fallback(device)
        self.fallback = fb if fb is not None and fb.beats_prior else None
        self.fallback_note = (
            None if fb is None or fb.beats_prior
            else "the bundle's axial fallback did not beat the prior in its validation: not used"
        )
        self.load_seconds = time.perf_counter() - t0
        self.versions = {**package_versions(), "bundle_spineseg": str(self.bundle.manifest.get("versions", {}).get("spineseg"))}

    def prior_rows(self, study_id: str) -> pd.DataFrame:
        """The bundle's training prior as 25 rows: the documented answer where nothing better exists."""
        from spine_seg.grading.ensemble import submission_from_rows

        sub, _ = submission_from_rows([study_id], None, self.ensemble.prior)
        return sub

    def predict(self, path: str | Path, series_csv: str | Path | None = None,
                progress: ProgressCallback | None = None, study: Study | None = None) -> StudyResult:
        """All stages for one study folder (see the module doc); raises :class:`StageError` on failure."""
        return self.predict_with_study(path, series_csv, progress, study)[0]

    def predict_with_study(self, path: str | Path, series_csv: str | Path | None = None,
                           progress: ProgressCallback | None = None,
                           study: Study | None = None) -> tuple[StudyResult, Study]:
        """:meth:`predict`, also returning the ingested :class:`Study`, so that writing the report reads the
        headers once and with the same series kinds (``series_csv``) as the prediction."""
        from spine_seg.grading.crops import crop_series

        timings: dict[str, float] = {}
        fallbacks: list[str] = []
        warnings: list[str] = []
        folder = Path(path)
        label = folder.name
        with _stage("ingest", timings, progress, label):
            if study is None:
                study = load_study(folder, series_csv)
            warnings += [f"skipped file {s.path.name}: {s.reason}" for s in study.skipped]
            warnings += list(study.warnings)
        sid = study.study_id
        series_ids = {k.value: tuple(s.series_id for s in study.series_of_kind(k)) for k in SeriesKind}

        landmarks: LandmarkSet | None = None
        projection: StudyProjection | None = None
        label_volume = None
        seg_info = None
        t2_series, t2_stack = _segmentation_stack(study)
        if t2_stack is None:
            fallbacks.append("no Sagittal T2/STIR series: no segmentation or landmarks; every row from the training prior")
        else:
            with _stage("segment", timings, progress, label):
                check_segmentation_budget(self.seg_model, t2_stack)
                label_volume = self.seg_model.predict_stack(t2_stack)
                seg_info = {"series_id": t2_stack.series_id, "stack": t2_stack.index, "shape_kji": list(t2_stack.shape),
                            "spacing_mm": [round(v, 4) for v in t2_stack.spacing_mm], "labels_present": list(label_volume.present())}
            with _stage("landmarks", timings, progress, label):
                from spine_seg.landmarks.structures import landmarks_from_label_volume

                landmarks = landmarks_from_label_volume(label_volume)
                warnings += list(landmarks.warnings)
                if not landmarks.levels:
                    reason = landmarks.missing[0].reason if landmarks.missing else "no disc"
                    fallbacks.append(f"no disc level found in the segmentation ({reason}): every row from the training prior")
                else:
                    fallbacks += [f"{m.level}: no landmark ({m.reason}): its rows from the training prior" for m in landmarks.missing]
                if landmarks.unsure and landmarks.levels:
                    warnings.append("level names unsure (no sacrum anchor or inconsistent evidence): grades may be "
                                    "shifted by a level; subarticular rows from the axial fallback")
            with _stage("project", timings, progress, label):
                projection = project_landmarks(landmarks, study)
                warnings += list(projection.warnings)

        crops: dict[tuple[str, str], np.ndarray] = {}
        sources: dict[str, CropSource] = {}
        needs_fallback: dict[str, np.ndarray] = {}
        if landmarks is not None and landmarks.levels and projection is not None:
            with _stage("crop", timings, progress, label):
                cache: dict = {}
                specs = self.ensemble.specs
                by_id: dict[str, Series] = {s.series_id: s for s in study.series}

                def cut(condition: str, level: str, series: Series, xyz: np.ndarray, flip: bool) -> None:
                    spec = specs.get(GROUP_OF_CONDITION[condition])
                    if spec is None:
                        return
                    c = crop_series(series, xyz, spec, flip=flip, cache=cache)
                    crops[(condition, level)] = c.pixels
                    sources[row_id(sid, condition, level)] = CropSource(
                        condition, level, c.series_id, c.stack_index, c.instance_number,
                        tuple(float(v) for v in xyz), c.xy_px[0], c.xy_px[1], c.distance_mm, c.flipped)

                for lm in landmarks.levels:
                    lv = lm.level
                    cut("spinal_canal_stenosis", lv, t2_series, spinal_point(lm.disc_xyz, lm.canal_xyz), False)
                    for side in SIDES:
                        p = projection.foramen(lv, side)
                        cond = f"{side}_neural_foraminal_narrowing"
                        if p is None:
                            continue  # no Sagittal T1: said once in the projection's `missing`
                        if not p.reached:
                            fallbacks.append(f"{lv} {side} foramen outside the Sagittal T1 ({abs(p.plane_distance_mm):.1f} mm "
                                             f"from the nearest slice): {cond} from the training prior")
                            continue
                        cut(cond, lv, by_id[p.hit.series_id], np.asarray(p.xyz_lps_mm), side == "right")
                    ax = projection.axial_at(lv)
                    why = None
                    if ax is None:
                        why = "no Axial T2 series"
                    elif not ax.reached:
                        why = f"the Axial T2 does not reach it (nearest slice {abs(ax.plane_distance_mm):.1f} mm away)"
                    elif landmarks.unsure:
                        why = "level names unsure"
                    elif lm.confidence < AXIAL_MIN_CONFIDENCE:
                        why = f"landmark confidence {lm.confidence:.2f} < {AXIAL_MIN_CONFIDENCE}"
                    if why is not None:
                        needs_fallback[lv] = lm.canal_xyz
                        fallbacks.append(f"{lv} subarticular: {why}")
                        continue
                    for side, xyz in subarticular_points(lm.canal_xyz, lm.normal).items():
                        cut(f"{side}_subarticular_stenosis", lv, by_id[ax.hit.series_id], xyz, side == "right")
                if projection.series_ids.get(SeriesKind.SAGITTAL_T1.value) == ():
                    fallbacks.append("no Sagittal T1 series: foraminal rows from the training prior")

        with _stage("grade", timings, progress, label):
            fb_probs: dict[tuple[str, str], np.ndarray] = {}
            if needs_fallback:
                if self.fallback is None:
                    fallbacks.append(self.fallback_note or "no axial fallback in the bundle: those subarticular rows "
                                     "from the training prior")
                else:
                    fb_probs, notes = self.fallback.predict(study, needs_fallback)
                    fallbacks += [f"axial fallback: {n}; those subarticular rows from the training prior" for n in notes]
            pred = self.ensemble.predict_study(sid, crops, fb_probs)
        submission = pred.submission.reset_index(drop=True)
        row_sources = dict(pred.sources)
        result = StudyResult(
            study_id=sid,
            folder=folder,
            submission=submission,
            sources=row_sources,
            landmarks=landmarks,
            projection=projection,
            segmentation=label_volume,
            segmentation_stack=seg_info,
            crops={r: c for r, c in sources.items() if row_sources.get(r) == SOURCE_MODEL},
            series=series_ids,
            fallbacks=tuple(dict.fromkeys(fallbacks)),
            warnings=tuple(dict.fromkeys(warnings)),
            timings_s=timings,
            versions=self.versions,
            bundle=self.bundle.summary(),
        )
        return result, study


def predict_study(path: str | Path, bundle: ModelBundle | str | Path, *, series_csv: str | Path | None = None,
                  device: str = "auto") -> StudyResult:
    """One study folder → :class:`StudyResult` (loads the bundle's models; use :class:`Predictor` for many)."""
    return Predictor(bundle, device).predict(path, series_csv)


# ---------------------------------------------------------------------------------------------------------
# writing (atomically: spine_seg.core.atomic)


#: Writes further per-study files (e.g. :func:`spine_seg.dicom_out.write_dicom_outputs`): called with the result,
#: its folder and the ingested study before ``result.json``; returns {output name: path}. A module-level function,
#: so that a Ray worker can receive it pickled.
ExtraOutputs = Callable[[StudyResult, Path, Study | None], Mapping[str, Path]]


def write_study_outputs(result: StudyResult, study_dir: Path, study: Study | None = None,
                        report: bool = True, run: Mapping[str, Any] | None = None,
                        extra_outputs: ExtraOutputs | None = None) -> dict[str, Path]:
    """``segmentation.nii.gz``, ``report.png``, what ``extra_outputs`` writes and, last, ``result.json`` (its
    presence marks the study done). A report or extra output that fails is a warning, not a failed study,
    unless the output folder itself fails (full, read-only: the OSError propagates and the study is not done).

    ``run``: the batch's resume key (bundle fingerprint and options), stored in ``result.json`` so that a
    re-run reuses the result only when it would have been made the same way.
    """
    written: dict[str, Path] = {}
    extra_warnings: list[str] = []
    if result.segmentation is not None:
        written["segmentation"] = atomic_write(study_dir / SEGMENTATION_NII, result.segmentation.save)
    if report:
        try:
            from spine_seg.report import write_report

            if study is None:
                study = load_study(result.folder)
            written["report"] = write_report(study_dir / REPORT_PNG, study, result)
        except (OSError, ValueError, RuntimeError, KeyError, DicomError) as exc:
            if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
                raise  # the output folder itself fails (full, read-only): the study is not done
            extra_warnings.append(f"report.png not written: {type(exc).__name__}: {exc}")
            log.warning("%s: report.png not written: %s", result.study_id, exc)
    if extra_outputs is not None:
        try:
            written.update(extra_outputs(result, study_dir, study))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, DicomError) as exc:
            if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
                raise  # as for report.png: the output folder itself fails
            extra_warnings.append(f"{getattr(extra_outputs, '__name__', 'extra outputs')} failed: {type(exc).__name__}: {exc}")
            log.warning("%s: extra outputs not written: %s", result.study_id, exc)
    doc = result.to_dict()
    doc["warnings"] += extra_warnings
    doc["outputs"] = {k: p.relative_to(study_dir).as_posix() if p.is_relative_to(study_dir) else p.name
                      for k, p in written.items()}
    if run is not None:
        doc["run"] = dict(run)
    written["result"] = atomic_write_text(study_dir / RESULT_JSON, textio.dumps(doc, indent=1))
    return written


# ---------------------------------------------------------------------------------------------------------
# batch

#: errno values that mean "the output folder cannot take this file" rather than "this study is odd".
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG})


class OutputFolderError(ValueError):
    """``--out`` cannot be written at all (a file, read-only, no permission, full): nothing can start."""


class OutputWriteError(RuntimeError):
    """``submission.csv`` or ``errors.csv`` could not be written at the end of a batch (per-study outputs stay)."""


def discover_studies(input_path: str | Path) -> list[Path]:
    """Study folders under ``input_path`` (:func:`spine_seg.dicom.discover.find_study_folders`): itself when it
    is one study, else each sub-folder that holds image DICOM (directly or in series folders)."""
    return list(find_study_folders(input_path).folders)


def check_output_folder(out: str | Path) -> Path:
    """Refuse an ``--out`` that cannot be a writable folder, without creating anything (so a bad INPUT or
    bundle found next leaves no trace): a file, a path under a file, a read-only or unwritable parent."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out}: is a file, not a folder")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputFolderError(f"--out {out}: {probe} is a file, so the folder cannot be made")
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise OutputFolderError(f"--out {out}: {probe} is on a read-only file system")
    except OSError:  # pragma: no cover - statvfs unsupported: the write probe below decides
        pass
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputFolderError(f"--out {out}: no permission to write in {probe}")
    return out


def prepare_output_folder(out: str | Path) -> Path:
    """Make ``out`` and prove it takes a file (write, rename, delete a probe); OutputFolderError otherwise."""
    out = check_output_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = atomic_write_text(out / f".spineseg-probe-{os.getpid()}", "probe\n")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc
    return out


_RESERVE = ".spineseg-reserve"
_OUTPUT_NAMES = (RESULT_JSON, REPORT_PNG, SEGMENTATION_NII)


def _reserve_space(out: Path, n_studies: int) -> Path | None:
    """Hold back the disk space the final ``submission.csv`` and ``errors.csv`` need, so that a disk that fills
    during the batch still gets them: released just before they are written. None where it cannot be held."""
    size = 64 * 1024 + n_studies * 25 * 80 * 2 + n_studies * 1024
    path = out / _RESERVE
    try:
        with open(path, "wb") as fp:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fp.fileno(), 0, size)
            else:  # pragma: no cover - non-POSIX
                fp.write(b"\0" * size)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise OutputFolderError(f"--out {out}: cannot hold {size // 1024} KiB for submission.csv and errors.csv "
                                f"({exc.strerror or exc})") from exc
    return path


def _remove_stale_temporaries(study_dir: Path) -> None:
    """Hidden temporaries (``.result.json.<pid>-<hex>.json`` …, ``dicom/.seg.dcm.…``) that a killed run left in a
    study's output folder: spineseg owns that folder, and a study about to be predicted again has no writer in
    flight there."""
    for folder, names in ((study_dir, _OUTPUT_NAMES), (study_dir / DICOM_DIR, (SEG_FILE, SR_FILE))):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and p.is_file() and any(p.name.startswith(f".{n}.") for n in names):
                p.unlink(missing_ok=True)


def bundle_fingerprint(bundle: Any) -> str:
    """A short hash of a bundle's file list (names, sizes, sha256s from its manifest): what resume compares."""
    manifest = getattr(bundle, "manifest", None)
    files = manifest.get("files") if isinstance(manifest, Mapping) else None
    basis = json.dumps(files if files else {"name": getattr(bundle, "name", str(bundle))}, sort_keys=True)
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


def run_key(bundle: Any, series_csv: str | Path | None) -> dict[str, Any]:
    """What must match for a finished ``result.json`` to be reused: the bundle and the options that change
    the result (the series CSV's content decides series kinds)."""
    from spine_seg.core.checksums import sha256_file

    csv_sha = sha256_file(Path(series_csv))[:16] if series_csv is not None else None
    return {"bundle_fingerprint": bundle_fingerprint(bundle), "options": {"series_csv_sha256": csv_sha}}


@dataclass(frozen=True)
class StudyOutcome:
    folder: Path
    study: str  # output folder name (the study folder's name)
    status: str  # "done", "resumed" (finished by an earlier run) or "failed"
    stage: str | None = None
    error: str | None = None
    seconds: float = 0.0
    fallbacks: int = 0
    note: str | None = None  # why an earlier result was not reused, or a duplicate study's warning


@dataclass(frozen=True)
class BatchResult:
    out: Path
    outcomes: tuple[StudyOutcome, ...]
    submission: Path
    errors: Path | None
    seconds: float
    load_seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[StudyOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "failed")

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "submission": str(self.submission),
            "errors": str(self.errors) if self.errors else None,
            "studies": len(self.outcomes),
            "done": sum(o.status == "done" for o in self.outcomes),
            "resumed": sum(o.status == "resumed" for o in self.outcomes),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 2),
            "model_load_seconds": round(self.load_seconds, 2),
            "outcomes": [{"study": o.study, "status": o.status, "stage": o.stage, "error": o.error,
                          "seconds": round(o.seconds, 2), "fallbacks": o.fallbacks} for o in self.outcomes],
        }


def _finished(study_dir: Path, key: Mapping[str, Any] | None = None) -> tuple[dict | None, str | None]:
    """(result.json document, None) when the study can be reused; (None, why not) when it exists but cannot;
    (None, None) when there is nothing to reuse."""
    p = study_dir / RESULT_JSON
    if not p.is_file():
        return None, None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        submission_rows_from_result_json(doc)
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return None, "its result.json is damaged"
    if key is not None:
        run = doc.get("run")
        if not isinstance(run, Mapping):
            return None, "its result.json records no bundle fingerprint (an older run)"
        if run.get("bundle_fingerprint") != key["bundle_fingerprint"]:
            return None, "its result.json was made with another bundle"
        if run.get("options") != key["options"]:
            return None, "its result.json was made with other options (--series-csv)"
    return doc, None


def fallback_rows(pred: Any, name: str) -> tuple[pd.DataFrame, str]:
    """A failed study's rows and where they came from: the training prior of ``pred`` (anything with
    ``prior_rows``: a :class:`Predictor`, a Ray worker's proxy), or uniform thirds if even that fails or
    there is none."""
    if pred is not None:
        try:
            return pred.prior_rows(name), "training prior"
        except Exception as exc:  # noqa: BLE001 - the batch must still write a complete submission
            log.warning("%s: training prior unavailable (%s): uniform rows", name, exc)
    from spine_seg.metric import uniform_submission

    return uniform_submission([name]), "uniform"


@dataclass(frozen=True)
class StudyTask:
    """One study of a batch still to predict: its place in INPUT (``index``), folder and output folder;
    ``rename``: its StudyInstanceUID is also in another folder, so its rows go under the folder name;
    ``note``: what the driver has to say about it (an earlier result not reused, the duplicate UID)."""

    index: int
    folder: Path
    study_dir: Path
    rename: bool = False
    note: str | None = None


@dataclass(frozen=True, eq=False)
class StudyRun:
    """What predicting one study gives the batch: its outcome, its 25 rows (the prior's when it failed) and,
    when it failed, its ``errors.csv`` row. Plain data, so that a Ray worker can send it to the driver."""

    outcome: StudyOutcome
    rows: pd.DataFrame
    error: Mapping[str, str] | None = None


def failed_run(task: StudyTask, stage: str, error: str, rows: pd.DataFrame, source: str,
               seconds: float = 0.0) -> StudyRun:
    """A failed study's run: its ``errors.csv`` row (stage, reason, where its rows came from) and those rows.
    The one place every engine (and the batch itself) turns a failure into its outcome."""
    name = task.folder.name
    log.warning("%s failed in %s: %s", name, stage, error)
    outcome = StudyOutcome(task.folder, name, "failed", stage, error, seconds, note=task.note)
    return StudyRun(outcome, rows, {"study": name, "folder": str(task.folder), "stage": stage, "error": error,
                                    "submission_rows": source})


def run_study(pred: Predictor, task: StudyTask, series_csv: str | Path | None = None, *, report: bool = True,
              run: Mapping[str, Any] | None = None, extra_outputs: ExtraOutputs | None = None,
              progress: Callable[[int, str, str], None] | None = None) -> StudyRun:
    """Predict one study and write its files (the unit of work of every engine: local loop or Ray worker).

    Never raises for the study's own failures: any exception (a :class:`StageError`, damaged DICOM, an OSError
    of its output folder, a bug) becomes a failed run with the training prior's rows, or the predicted rows
    when only writing its files failed. ``run``: the batch's resume key, stored in ``result.json``.
    """
    name = task.folder.name
    try:
        _remove_stale_temporaries(task.study_dir)
    except OSError as exc:  # harmless leftovers; writing will say whether the folder is usable
        log.warning("%s: stale temporaries not removed: %s", name, exc)
    ts = time.perf_counter()
    stage = "ingest"
    result: StudyResult | None = None

    def on_stage(label: str, st: str) -> None:
        nonlocal stage
        stage = st
        if progress is not None:
            progress(task.index, label, st)

    try:
        study = None
        if task.rename:
            study = dataclasses.replace(load_study(task.folder, series_csv), study_id=name)
        result, study = pred.predict_with_study(task.folder, series_csv, progress=on_stage, study=study)
        on_stage(name, "write")
        try:
            write_study_outputs(result, task.study_dir, study, report=report, run=run, extra_outputs=extra_outputs)
        except OSError as exc:
            raise StageError("write", f"{task.study_dir}: {type(exc).__name__}: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the batch never dies: a study's failure is its errors.csv row
        st = exc.stage if isinstance(exc, StageError) else stage
        msg = str(exc) if isinstance(exc, StageError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (StageError, DicomError, OSError, ValueError)):
            log.debug("%s: unexpected failure", name, exc_info=True)
        if st == "write" and result is not None:
            rows, source = result.submission, "predicted (outputs not written)"
        else:
            rows, source = fallback_rows(pred, name)
        return failed_run(task, st, msg, rows, source, time.perf_counter() - ts)
    outcome = StudyOutcome(task.folder, name, "done", seconds=time.perf_counter() - ts,
                           fallbacks=len(result.fallbacks), note=task.note)
    return StudyRun(outcome, result.submission)


class BatchEngine(Protocol):
    """Runs a batch's pending studies somewhere (``spine_seg.engines``: in this process, or on Ray workers)."""

    load_seconds: float

    def run(self, tasks: Sequence[StudyTask], job: BatchJob,
            progress: Callable[[int, str, str], None]) -> Iterator[StudyRun]:
        """Yield one :class:`StudyRun` per task, in any order, as each finishes (each from :func:`run_study`,
        or :func:`failed_run` where the engine itself lost the study). Raise before the first one for what
        stops the batch from starting (:data:`ENGINE_START_ERRORS`)."""
        ...


@dataclass(frozen=True)
class BatchJob:
    """What every worker needs to predict a study the way ``predict_batch`` was asked to."""

    bundle: ModelBundle | str | Path
    device: str = "auto"
    series_csv: str | Path | None = None
    report: bool = True
    extra_outputs: ExtraOutputs | None = None
    run: Mapping[str, Any] | None = None  # the resume key every worker stores in result.json


#: Raised by an engine before its first study, these mean the batch could not start (``predict`` exits 2);
#: anything else an engine raises costs only the studies it had not finished (stage ``engine``).
ENGINE_START_ERRORS: tuple[type[BaseException], ...] = (WorkerStartError, MissingDependencyError, ConnectionError,
                                                         ValueError)
#: Stage in errors.csv of studies an engine lost when it failed as a whole.
ENGINE_STAGE = "engine"


def _batch_bundle(bundle: ModelBundle | str | Path | None, predictor: Predictor | None,
                  engine: BatchEngine | None) -> ModelBundle:
    """The batch's bundle (for the resume key): the predictor's (given, or the engine's own), else loaded."""
    for pred in (predictor, getattr(engine, "predictor", None)):
        if pred is not None:
            return pred.bundle
    if bundle is None:
        raise ValueError("predict_batch: no bundle and no predictor")
    return bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)


def predict_batch(
    input_path: str | Path,
    bundle: ModelBundle | str | Path | None,
    out: str | Path,
    *,
    series_csv: str | Path | None = None,
    device: str = "auto",
    resume: bool = True,
    report: bool = True,
    progress: Callable[[int, int, str, str], None] | None = None,
    predictor: Predictor | None = None,
    extra_outputs: ExtraOutputs | None = None,
    engine: BatchEngine | None = None,
) -> BatchResult:
    """Predict every study under ``input_path`` into ``out`` (see the module doc for the files).

    ``progress(i, n, study, stage)`` is called as each stage starts (stage ``done``/``failed``/``resumed``
    when a study ends). Raises only before the first study, for problems with the input as a whole, the
    output folder (:class:`OutputFolderError`), the bundle or the engine's start (:data:`ENGINE_START_ERRORS`);
    every failure of one study, its output folder's OSErrors included, becomes its row in ``errors.csv`` and
    the batch goes on. :class:`OutputWriteError` if the final CSVs cannot be written.

    ``engine``: where the pending studies run (default: one after the other in this process, with
    ``predictor``); discovery, resume (with the bundle fingerprint), ``submission.csv`` and ``errors.csv``
    stay here either way. ``extra_outputs``: further per-study files (DICOM SEG/SR:
    :func:`spine_seg.dicom_out.write_dicom_outputs`).
    """
    t0 = time.perf_counter()
    out = Path(out)
    found = find_study_folders(input_path)
    folders = list(found.folders)
    if series_csv is not None:
        read_series_csv(series_csv)  # a bad CSV stops the run here, not once per study
    prepare_output_folder(out)
    reserve = _reserve_space(out, len(folders))
    try:
        the_bundle = _batch_bundle(bundle, predictor, engine)
        pred = None if engine is not None else (predictor or Predictor(the_bundle, device))
        key = run_key(the_bundle, series_csv)
        duplicated = {f for fs in found.duplicates.values() for f in fs}
        outcomes: list[StudyOutcome] = []
        rows: dict[str, pd.DataFrame] = {}
        errors: list[dict[str, str]] = []
        n = len(folders)
        order = {folder: i for i, folder in enumerate(folders)}

        def report_progress(i: int, study: str, stage: str) -> None:
            if progress is not None:
                progress(i, n, study, stage)

        def record(run: StudyRun) -> None:
            i = order[run.outcome.folder]
            rows[run.outcome.study] = run.rows
            outcomes.append(run.outcome)
            if run.error is not None:
                errors.append(dict(run.error))
                try:
                    _write_errors(out, errors)  # so far: kept if the batch is killed
                except OSError as werr:
                    log.warning("%s: not written yet (%s); retried at the end", out / ERRORS_CSV, werr)
            report_progress(i, run.outcome.study, run.outcome.status)

        pending: list[StudyTask] = []
        for i, folder in enumerate(folders):
            name = folder.name
            study_dir = out / name
            note = None
            if resume:
                done, why = _finished(study_dir, key)
                if done is not None:
                    rows[name] = submission_rows_from_result_json(done)
                    outcomes.append(StudyOutcome(folder, name, "resumed", fallbacks=len(done.get("fallbacks", []))))
                    report_progress(i, name, "resumed")
                    continue
                if why is not None:
                    note = f"{why}: predicted again"
                    log.warning("%s: %s", name, note)
            if folder in duplicated:
                uid = found.study_uids.get(folder, "")
                note = (f"{note}; " if note else "") + (
                    f"StudyInstanceUID {uid} is also in another folder: rows under the folder name {name}")
            task = StudyTask(i, folder, study_dir, rename=folder in duplicated, note=note)
            if pred is not None:
                record(run_study(pred, task, series_csv, report=report, run=key, extra_outputs=extra_outputs,
                                 progress=report_progress))
            else:
                pending.append(task)
        if engine is not None and pending:
            job = BatchJob(the_bundle, device, series_csv, report, extra_outputs, key)
            finished: set[Path] = set()
            lost: Exception | None = None
            try:
                for run in engine.run(pending, job, report_progress):
                    record(run)
                    finished.add(run.outcome.folder)
            except Exception as exc:  # noqa: BLE001 - the batch never dies once it has started
                if not finished and isinstance(exc, ENGINE_START_ERRORS):
                    raise  # the engine could not start: the batch's problem (exit 2), not every study's
                lost = exc
                log.warning("the %s engine failed: %s: %s", type(engine).__name__, type(exc).__name__, exc)
            for task in pending:  # studies the engine lost: errors.csv rows, uniform rows in the submission
                if task.folder not in finished:
                    why = (f"the engine failed before this study finished: {type(lost).__name__}: {lost}"
                           if lost is not None else "the engine returned no result for it")
                    record(failed_run(task, ENGINE_STAGE, why, *fallback_rows(None, task.folder.name)))
    finally:
        if reserve is not None:
            reserve.unlink(missing_ok=True)
    outcomes.sort(key=lambda o: order[o.folder])  # input order, whichever order an engine finished them in

    submission = pd.concat([rows[o.study] for o in outcomes if o.study in rows], ignore_index=True)
    submission = submission.drop_duplicates("row_id", keep="last")
    try:
        sub_path = atomic_write(out / SUBMISSION_CSV, lambda p: submission.to_csv(p, index=False, float_format="%.6f"))
        err_path = _write_errors(out, sorted(errors, key=lambda e: order.get(Path(e["folder"]), n)))
    except OSError as exc:
        raise OutputWriteError(f"{out}: cannot write {SUBMISSION_CSV} / {ERRORS_CSV}: {exc.strerror or exc}; "
                               "per-study results written so far are kept, run again to assemble them") from exc
    load_seconds = engine.load_seconds if engine is not None else pred.load_seconds  # type: ignore[union-attr]
    return BatchResult(out, tuple(outcomes), sub_path, err_path, time.perf_counter() - t0, load_seconds,
                       found.warnings)


def _write_errors(out: Path, errors: Sequence[Mapping[str, str]]) -> Path | None:
    """``errors.csv`` of this run (stale ones from an earlier run are removed when nothing failed now)."""
    path = out / ERRORS_CSV
    if not errors:
        path.unlink(missing_ok=True)
        return None
    frame = pd.DataFrame(list(errors), columns=list(ERROR_COLUMNS))
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def check_submission(frame: pd.DataFrame, study_ids: Sequence[str]) -> list[str]:
    """Problems with a submission for these studies (empty list when it is complete and valid): the metric's
    own format checks, then what ``predict`` promises beyond them (every row present, rows summing to 1)."""
    from spine_seg import metric

    try:
        ids, p = metric.check_submission(frame)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    want = {row_id(s, c, lv) for s in study_ids for c in CONDITIONS for lv in LEVELS}
    missing = want - set(ids)
    if missing:
        problems.append(f"{len(missing)} rows missing, e.g. {sorted(missing)[:3]}")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        problems.append("rows that do not sum to 1")
    return problems


__all__ = [
    "AXIAL_MIN_CONFIDENCE",
    "ERRORS_CSV",
    "REPORT_PNG",
    "RESULT_JSON",
    "SEGMENTATION_NII",
    "SOURCE_FALLBACK",
    "SOURCE_MODEL",
    "SOURCE_PRIOR",
    "SPINAL_POINT_FRACTION",
    "STAGES",
    "SUBARTICULAR_OFFSET_MM",
    "SUBMISSION_CSV",
    "BatchEngine",
    "BatchJob",
    "BatchResult",
    "ENGINE_START_ERRORS",
    "ENGINE_STAGE",
    "ExtraOutputs",
    "OutputFolderError",
    "OutputWriteError",
    "bundle_fingerprint",
    "check_output_folder",
    "failed_run",
    "fallback_rows",
    "prepare_output_folder",
    "run_key",
    "Predictor",
    "StageError",
    "StudyOutcome",
    "StudyRun",
    "StudyTask",
    "atomic_write",
    "atomic_write_text",
    "check_submission",
    "discover_studies",
    "predict_batch",
    "predict_study",
    "run_study",
    "spinal_point",
    "subarticular_points",
    "write_study_outputs",
]
