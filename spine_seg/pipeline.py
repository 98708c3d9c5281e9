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
submission stays complete, and the batch goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from spine_seg.atomic import atomic_write, atomic_write_text
from spine_seg.bundle import ModelBundle, load_bundle, package_versions
from spine_seg.constants import CONDITIONS, GROUP_OF_CONDITION, LEVELS, SIDES, SeriesKind, row_id
from spine_seg.dicom import DicomError, Series, Study, load_study
from spine_seg.result import (
    SOURCE_FALLBACK,
    SOURCE_MODEL,
    SOURCE_PRIOR,
    CropSource,
    StudyResult,
    submission_rows_from_result_json,
)
from spine_seg.segmentation.landmarks import LandmarkSet, disc_frame
from spine_seg.segmentation.project import StudyProjection, project_landmarks

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
                label_volume = self.seg_model.predict_stack(t2_stack)
                seg_info = {"series_id": t2_stack.series_id, "stack": t2_stack.index, "shape_kji": list(t2_stack.shape),
                            "spacing_mm": [round(v, 4) for v in t2_stack.spacing_mm], "labels_present": list(label_volume.present())}
            with _stage("landmarks", timings, progress, label):
                from spine_seg.segmentation.landmarks import landmarks_from_labels

                landmarks = landmarks_from_labels(label_volume.labels, label_volume.affine)
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
# writing (atomically: spine_seg.atomic)


#: Writes further per-study files (e.g. :func:`spine_seg.dicom_out.write_dicom_outputs`): called with the result,
#: its folder and the ingested study before ``result.json``; returns {output name: path}. A module-level function,
#: so that a Ray worker can receive it pickled.
ExtraOutputs = Callable[[StudyResult, Path, Study | None], Mapping[str, Path]]


def write_study_outputs(result: StudyResult, study_dir: Path, study: Study | None = None,
                        report: bool = True, extra_outputs: ExtraOutputs | None = None) -> dict[str, Path]:
    """``segmentation.nii.gz``, ``report.png``, what ``extra_outputs`` writes and, last, ``result.json`` (its
    presence marks the study done). A report or extra output that fails is a warning, not a failed study."""
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
            extra_warnings.append(f"report.png not written: {type(exc).__name__}: {exc}")
            log.warning("%s: report.png not written: %s", result.study_id, exc)
    if extra_outputs is not None:
        try:
            written.update(extra_outputs(result, study_dir, study))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, DicomError) as exc:
            extra_warnings.append(f"{getattr(extra_outputs, '__name__', 'extra outputs')} failed: {type(exc).__name__}: {exc}")
            log.warning("%s: extra outputs not written: %s", result.study_id, exc)
    doc = result.to_dict()
    doc["warnings"] += extra_warnings
    doc["outputs"] = {k: p.relative_to(study_dir).as_posix() if p.is_relative_to(study_dir) else p.name
                      for k, p in written.items()}
    written["result"] = atomic_write_text(study_dir / RESULT_JSON, json.dumps(doc, indent=1))
    return written


# ---------------------------------------------------------------------------------------------------------
# batch


def _has_files(folder: Path, depth: int) -> bool:
    pattern = "/".join(["*"] * depth)
    return any(p.is_file() and not p.name.startswith(".") for p in folder.glob(pattern))


def discover_studies(input_path: str | Path) -> list[Path]:
    """Study folders under ``input_path``: itself when it holds files directly or one folder down
    (``<study>/<series>/*.dcm``), else each sub-folder (``test_images/<study>/<series>/*.dcm``)."""
    root = Path(input_path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: INPUT must be a study folder or a folder of study folders, not a file")
    if not any(p.is_file() for p in root.rglob("*") if not p.name.startswith(".")):
        raise FileNotFoundError(f"{root}: empty folder: no files, so no study to predict")
    if _has_files(root, 1) or _has_files(root, 2):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class StudyOutcome:
    folder: Path
    study: str  # output folder name (the study folder's name)
    status: str  # "done", "resumed" (finished by an earlier run) or "failed"
    stage: str | None = None
    error: str | None = None
    seconds: float = 0.0
    fallbacks: int = 0


@dataclass(frozen=True)
class BatchResult:
    out: Path
    outcomes: tuple[StudyOutcome, ...]
    submission: Path
    errors: Path | None
    seconds: float
    load_seconds: float = 0.0

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


def _finished(study_dir: Path) -> dict | None:
    p = study_dir / RESULT_JSON
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        submission_rows_from_result_json(doc)
    except (ValueError, KeyError):
        return None  # damaged: predict again
    return doc


@dataclass(frozen=True)
class StudyTask:
    """One study of a batch still to predict: its place in INPUT (``index``), folder and output folder."""

    index: int
    folder: Path
    study_dir: Path


@dataclass(frozen=True, eq=False)
class StudyRun:
    """What predicting one study gives the batch: its outcome, its 25 rows (the prior's when it failed) and,
    when it failed, its ``errors.csv`` row. Plain data, so that a Ray worker can send it to the driver."""

    outcome: StudyOutcome
    rows: pd.DataFrame
    error: Mapping[str, str] | None = None


def run_study(pred: Predictor, task: StudyTask, series_csv: str | Path | None = None, *, report: bool = True,
              extra_outputs: ExtraOutputs | None = None,
              progress: Callable[[int, str, str], None] | None = None) -> StudyRun:
    """Predict one study and write its files (the unit of work of every engine: local loop or Ray worker); a
    :class:`StageError` becomes a failed run with the training prior's rows, anything else propagates."""
    name = task.folder.name
    ts = time.perf_counter()

    def report_progress(stage: str) -> None:
        if progress is not None:
            progress(task.index, name, stage)

    try:
        result, study = pred.predict_with_study(task.folder, series_csv, progress=lambda s, stage: report_progress(stage))
        report_progress("write")
        write_study_outputs(result, task.study_dir, study, report=report, extra_outputs=extra_outputs)
    except StageError as exc:
        error = {"study": name, "folder": str(task.folder), "stage": exc.stage, "error": str(exc),
                 "submission_rows": "training prior"}
        log.warning("%s failed in %s: %s", name, exc.stage, exc)
        outcome = StudyOutcome(task.folder, name, "failed", exc.stage, str(exc), time.perf_counter() - ts)
        return StudyRun(outcome, pred.prior_rows(name), error)
    outcome = StudyOutcome(task.folder, name, "done", seconds=time.perf_counter() - ts, fallbacks=len(result.fallbacks))
    return StudyRun(outcome, result.submission)


class BatchEngine(Protocol):
    """Runs a batch's pending studies somewhere (``spine_seg.engines``: in this process, or on Ray workers)."""

    load_seconds: float

    def run(self, tasks: Sequence[StudyTask], job: BatchJob,
            progress: Callable[[int, str, str], None]) -> Iterator[StudyRun]:
        """Yield one :class:`StudyRun` per task, in any order, as each finishes."""
        ...


@dataclass(frozen=True)
class BatchJob:
    """What every worker needs to predict a study the way ``predict_batch`` was asked to."""

    bundle: ModelBundle | str | Path
    device: str = "auto"
    series_csv: str | Path | None = None
    report: bool = True
    extra_outputs: ExtraOutputs | None = None


def predict_batch(
    input_path: str | Path,
    bundle: ModelBundle | str | Path,
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
    when a study ends). Raises only for problems with the input as a whole or the bundle; a study's own
    failure goes to ``errors.csv``. ``engine``: where the pending studies run (default: one after the other
    in this process, with ``predictor``); resume, ``submission.csv`` and ``errors.csv`` stay here either way.
    ``extra_outputs``: further per-study files (DICOM SEG/SR: :func:`spine_seg.dicom_out.write_dicom_outputs`).
    """
    t0 = time.perf_counter()
    out = Path(out)
    folders = discover_studies(input_path)
    out.mkdir(parents=True, exist_ok=True)
    pred = None if engine is not None else (predictor or Predictor(bundle, device))
    outcomes: list[StudyOutcome] = []
    rows: dict[str, pd.DataFrame] = {}
    errors: list[dict[str, str]] = []
    n = len(folders)

    def report_progress(i: int, study: str, stage: str) -> None:
        if progress is not None:
            progress(i, n, study, stage)

    def record(run: StudyRun, i: int) -> None:
        rows[run.outcome.study] = run.rows
        outcomes.append(run.outcome)
        if run.error is not None:
            errors.append(dict(run.error))
            _write_errors(out, errors)
        report_progress(i, run.outcome.study, run.outcome.status)

    order = {folder: i for i, folder in enumerate(folders)}
    pending: list[StudyTask] = []
    for i, folder in enumerate(folders):
        name = folder.name
        study_dir = out / name
        done = _finished(study_dir) if resume else None
        if done is not None:
            rows[name] = submission_rows_from_result_json(done)
            outcomes.append(StudyOutcome(folder, name, "resumed", fallbacks=len(done.get("fallbacks", []))))
            report_progress(i, name, "resumed")
            continue
        task = StudyTask(i, folder, study_dir)
        if pred is not None:
            record(run_study(pred, task, series_csv, report=report, extra_outputs=extra_outputs,
                             progress=report_progress), i)
        else:
            pending.append(task)
    if engine is not None and pending:
        job = BatchJob(bundle, device, series_csv, report, extra_outputs)
        for run in engine.run(pending, job, report_progress):
            record(run, order[run.outcome.folder])
    outcomes.sort(key=lambda o: order[o.folder])  # input order, whichever order an engine finished them in

    submission = pd.concat([rows[o.study] for o in outcomes if o.study in rows], ignore_index=True)
    submission = submission.drop_duplicates("row_id", keep="last")
    sub_path = atomic_write(out / SUBMISSION_CSV, lambda p: submission.to_csv(p, index=False, float_format="%.6f"))
    err_path = _write_errors(out, sorted(errors, key=lambda e: order.get(Path(e["folder"]), n)))
    load_seconds = engine.load_seconds if engine is not None else pred.load_seconds  # type: ignore[union-attr]
    return BatchResult(out, tuple(outcomes), sub_path, err_path, time.perf_counter() - t0, load_seconds)


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
    "ExtraOutputs",
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
