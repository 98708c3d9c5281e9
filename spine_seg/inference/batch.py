"""Batch prediction: a folder of study folders (the competition's ``test_images``) or one study folder.

A study whose ``result.json`` exists is finished and a re-run skips it (resume). A study that fails is
written to ``errors.csv`` with its stage and reason; its rows in ``submission.csv`` come from the prior, so
the submission stays complete, and the batch goes on. Where the studies run is the engine's choice
(:mod:`spine_seg.inference.engines`: this process, or Ray workers); each study is :func:`run_study` either
way, and discovery, resume, ``submission.csv`` and ``errors.csv`` stay in :func:`predict_batch`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from spine_seg.core.atomic import atomic_write
from spine_seg.core.constants import CONDITIONS, LEVELS, row_id
from spine_seg.core.errors import UsageError
from spine_seg.dicom import DicomError, load_study, read_series_csv
from spine_seg.dicom.discover import find_study_folders
from spine_seg.inference import predictor as predictor_module  # looked up at call time (tests stub it)
from spine_seg.inference.bundle import ModelBundle, load_bundle
from spine_seg.inference.engines import MissingDependencyError, WorkerStartError
from spine_seg.inference.outputs import (
    ERRORS_CSV,
    RESULT_JSON,
    SUBMISSION_CSV,
    ExtraOutputs,
    OutputWriteError,
    _remove_stale_temporaries,
    _reserve_space,
    _write_errors,
    prepare_output_folder,
    write_study_outputs,
)
from spine_seg.inference.predictor import Predictor, StageError
from spine_seg.report.result import (
    StudyResult,
    submission_rows_from_result_json,
)

log = logging.getLogger(__name__)


def discover_studies(input_path: str | Path) -> list[Path]:
    """Study folders under ``input_path`` (:func:`spine_seg.dicom.discover.find_study_folders`): itself when it
    is one study, else each sub-folder that holds image DICOM (directly or in series folders)."""
    return list(find_study_folders(input_path).folders)


def bundle_fingerprint(bundle: Any) -> str:
    """A short hash of a bundle's file list (names, sizes, sha256s from its manifest): what resume compares."""
    manifest = getattr(bundle, "manifest", None)
    files = manifest.get("files") if isinstance(manifest, Mapping) else None
    basis = json.dumps(files if files else {"name": getattr(bundle, "name", str(bundle))}, sort_keys=True)
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


def run_key(
    bundle: Any, series_csv: str | Path | None, cross_check: str = "auto", mirroring: str = "superior_inferior"
) -> dict[str, Any]:
    """What must match for a finished ``result.json`` to be reused: the bundle and the options that change
    the result (the series CSV's content decides series kinds; ``cross_check`` and ``mirroring`` are recorded
    only when they are not the default, so results written before the options existed still resume)."""
    from spine_seg.core.checksums import sha256_file

    csv_sha = sha256_file(Path(series_csv))[:16] if series_csv is not None else None
    options: dict[str, Any] = {"series_csv_sha256": csv_sha}
    if cross_check != "auto":
        options["cross_check"] = str(cross_check)
    if mirroring != "superior_inferior":
        options["mirroring"] = str(mirroring)
    return {"bundle_fingerprint": bundle_fingerprint(bundle), "options": options}


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
    submission: Path | None  # None: no grading bundle, so no submission.csv
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
            "submission": str(self.submission) if self.submission is not None else None,
            "competition_rows": self.submission is not None,
            "errors": str(self.errors) if self.errors else None,
            "studies": len(self.outcomes),
            "done": sum(o.status == "done" for o in self.outcomes),
            "resumed": sum(o.status == "resumed" for o in self.outcomes),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 2),
            "model_load_seconds": round(self.load_seconds, 2),
            "outcomes": [
                {
                    "study": o.study,
                    "status": o.status,
                    "stage": o.stage,
                    "error": o.error,
                    "seconds": round(o.seconds, 2),
                    "fallbacks": o.fallbacks,
                }
                for o in self.outcomes
            ],
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


#: What errors.csv says of a failed study's rows when the batch has no grading bundle.
NO_ROWS = "none (no grading bundle)"


def fallback_rows(pred: Any, name: str, grading: bool = True) -> tuple[pd.DataFrame | None, str]:
    """A failed study's rows and where they came from: the training prior of ``pred`` (anything with
    ``prior_rows``: a :class:`Predictor`, a Ray worker's proxy), or uniform thirds if even that fails or
    there is none; no rows at all for a batch without a grading bundle (nothing is made up)."""
    if not grading:
        return None, NO_ROWS
    if pred is not None:
        try:
            rows = pred.prior_rows(name)
            if rows is None:
                return None, NO_ROWS
            return rows, "training prior"
        except Exception as exc:  # noqa: BLE001 - the batch must still write a complete submission
            log.warning("%s: training prior unavailable (%s): uniform rows", name, exc)
    from spine_seg.grading.metric import uniform_submission

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
    rows: pd.DataFrame | None  # None: predicted without a grading bundle (no competition rows)
    error: Mapping[str, str] | None = None


def failed_run(
    task: StudyTask, stage: str, error: str, rows: pd.DataFrame | None, source: str, seconds: float = 0.0
) -> StudyRun:
    """A failed study's run: its ``errors.csv`` row (stage, reason, where its rows came from) and those rows.
    The one place every engine (and the batch itself) turns a failure into its outcome."""
    name = task.folder.name
    # INFO, not WARNING: the command's summary names the failure once (a second line reads as a second fault);
    # errors.csv keeps it, and -v shows this line as it happens
    log.info("%s failed in %s: %s", name, stage, error)
    outcome = StudyOutcome(task.folder, name, "failed", stage, error, seconds, note=task.note)
    return StudyRun(
        outcome,
        rows,
        {"study": name, "folder": str(task.folder), "stage": stage, "error": error, "submission_rows": source},
    )


def run_study(
    pred: Predictor,
    task: StudyTask,
    series_csv: str | Path | None = None,
    *,
    report: bool = True,
    run: Mapping[str, Any] | None = None,
    extra_outputs: ExtraOutputs | None = None,
    progress: Callable[[int, str, str], None] | None = None,
) -> StudyRun:
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
        rows: pd.DataFrame | None
        if st == "write" and result is not None and result.submission is not None:
            rows, source = result.submission, "predicted (outputs not written)"
        else:
            rows, source = fallback_rows(pred, name)
        return failed_run(task, st, msg, rows, source, time.perf_counter() - ts)
    outcome = StudyOutcome(
        task.folder, name, "done", seconds=time.perf_counter() - ts, fallbacks=len(result.fallbacks), note=task.note
    )
    return StudyRun(outcome, result.submission)


class BatchEngine(Protocol):
    """Runs a batch's pending studies somewhere (``spine_seg.inference.engines``: in this process, or on Ray
    workers)."""

    load_seconds: float

    def run(
        self, tasks: Sequence[StudyTask], job: BatchJob, progress: Callable[[int, str, str], None]
    ) -> Iterator[StudyRun]:
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
    cross_check: str = "auto"  # when the Sagittal T1 checks the T2's level names (core.choices.CrossCheck)
    mirroring: str = "superior_inferior"  # the segmentation's test-time mirroring (core.choices.Mirroring)


#: Raised by an engine before its first study, these mean the batch could not start (``predict`` exits 2);
#: anything else an engine raises costs only the studies it had not finished (stage ``engine``).
ENGINE_START_ERRORS: tuple[type[BaseException], ...] = (
    WorkerStartError,
    MissingDependencyError,
    ConnectionError,
    ValueError,
)


#: Stage in errors.csv of studies an engine lost when it failed as a whole.
ENGINE_STAGE = "engine"


def _batch_bundle(
    bundle: ModelBundle | str | Path | None, predictor: Predictor | None, engine: BatchEngine | None
) -> ModelBundle:
    """The batch's bundle (for the resume key): the predictor's (given, or the engine's own), else loaded."""
    for pred in (predictor, getattr(engine, "predictor", None)):
        if pred is not None:
            return pred.bundle
    if bundle is None:
        raise UsageError("predict_batch: no bundle and no predictor")
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
    cross_check: str = "auto",
    mirroring: str = "superior_inferior",
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
    :func:`spine_seg.dicom_out.write_dicom_outputs`). ``cross_check``, ``mirroring``: see
    :class:`~.predictor.Predictor` (a ``predictor`` passed in keeps its own).

    Long on purpose: discovery, resume, the engine loop and the final CSVs share the batch's state.
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
        pred = (
            None
            if engine is not None
            else (
                predictor
                or predictor_module.Predictor(the_bundle, device, cross_check=cross_check, mirroring=mirroring)
            )
        )
        key = run_key(
            the_bundle,
            series_csv,
            getattr(pred, "cross_check", cross_check),
            getattr(pred, "mirroring", mirroring),
        )
        grading = bool(getattr(the_bundle, "has_grading", True))
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
            if run.rows is not None:
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
                    f"StudyInstanceUID {uid} is also in another folder: rows under the folder name {name}"
                )
            task = StudyTask(i, folder, study_dir, rename=folder in duplicated, note=note)
            if pred is not None:
                record(
                    run_study(
                        pred,
                        task,
                        series_csv,
                        report=report,
                        run=key,
                        extra_outputs=extra_outputs,
                        progress=report_progress,
                    )
                )
            else:
                pending.append(task)
        if engine is not None and pending:
            job = BatchJob(the_bundle, device, series_csv, report, extra_outputs, key, cross_check, mirroring)
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
                    why = (
                        f"the engine failed before this study finished: {type(lost).__name__}: {lost}"
                        if lost is not None
                        else "the engine returned no result for it"
                    )
                    record(failed_run(task, ENGINE_STAGE, why, *fallback_rows(None, task.folder.name, grading)))
    finally:
        if reserve is not None:
            reserve.unlink(missing_ok=True)
    outcomes.sort(key=lambda o: order[o.folder])  # input order, whichever order an engine finished them in

    sub_path: Path | None = None
    try:
        if grading:
            submission = pd.concat([rows[o.study] for o in outcomes if o.study in rows], ignore_index=True)
            submission = submission.drop_duplicates("row_id", keep="last")
            sub_path = atomic_write(
                out / SUBMISSION_CSV, lambda p: submission.to_csv(p, index=False, float_format="%.6f")
            )
        err_path = _write_errors(out, sorted(errors, key=lambda e: order.get(Path(e["folder"]), n)))
    except OSError as exc:
        raise OutputWriteError(
            f"{out}: cannot write {SUBMISSION_CSV} / {ERRORS_CSV}: {exc.strerror or exc}; "
            "per-study results written so far are kept, run again to assemble them"
        ) from exc
    load_seconds = engine.load_seconds if engine is not None else pred.load_seconds  # type: ignore[union-attr]
    return BatchResult(out, tuple(outcomes), sub_path, err_path, time.perf_counter() - t0, load_seconds, found.warnings)


def check_submission(frame: pd.DataFrame, study_ids: Sequence[str]) -> list[str]:
    """Problems with a submission for these studies (empty list when it is complete and valid): the metric's
    own format checks, then what ``predict`` promises beyond them (every row present, rows summing to 1)."""
    from spine_seg.grading import metric

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
