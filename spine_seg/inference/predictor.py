"""``predict``: a DICOM study folder → graded findings (:class:`Predictor` sequences the stages).

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

Which crop is cut where, and which row falls back, is :func:`spine_seg.inference.crop_plan.plan_crops`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spine_seg.core import geometry
from spine_seg.core.choices import CrossCheck, Mirroring, check_choice, values
from spine_seg.core.constants import GROUP_OF_CONDITION, SeriesKind, row_id
from spine_seg.dicom import DicomError, Series, Study, load_study
from spine_seg.inference.bundle import ModelBundle, base_model_bundle, load_bundle, package_versions
from spine_seg.inference.crop_plan import CropPlan, plan_crops
from spine_seg.landmarks import LandmarkSet
from spine_seg.landmarks.project import StudyProjection, project_landmarks
from spine_seg.measurements import MeasuredGrade, SpineMeasurements
from spine_seg.report.result import (
    SOURCE_MODEL,
    CropSource,
    StudyResult,
)

log = logging.getLogger(__name__)

#: What a study's result says when the bundle has no grading (the shipped base model alone).
NO_GRADING_NOTE = (
    "no grading bundle (--model): the 25 competition rows were not produced; levels, measurements and "
    "measured grades only"
)


STAGES: tuple[str, ...] = ("ingest", "segment", "landmarks", "measure", "project", "crop", "grade")


ProgressCallback = Callable[[str, str], None]  # (study, stage)


class StageError(RuntimeError):
    """A study failed in one stage; ``stage`` says which, the message says why."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def _segmentation_stack(study: Study) -> tuple[Series | None, Any]:
    """The Sagittal T2/STIR series and stack to segment (:meth:`spine_seg.dicom.Study.segmentation_stack`)."""
    return study.segmentation_stack()


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
    geometry.check_resample_budget(
        stack.shape,
        tuple(reversed(stack.spacing_mm)),
        target,
        max_resampled_voxels(),
        what=f"series {stack.series_id} stack {stack.index}",
    )


class Predictor:
    """A bundle's models loaded once, applied to many studies (``predict_study`` wraps one call).

    ``bundle`` None: the shipped base segmentation model alone (:func:`~.bundle.base_model_bundle`): levels,
    measurements and measured grades, no competition rows. ``cross_check``:
    :class:`~spine_seg.core.choices.CrossCheck`; ``mirroring``: the segmentation's test-time mirroring,
    :class:`~spine_seg.core.choices.Mirroring`.
    """

    def __init__(
        self,
        bundle: ModelBundle | str | Path | None = None,
        device: str = "auto",
        cross_check: str = CrossCheck.AUTO,
        mirroring: str = Mirroring.SUPERIOR_INFERIOR,
    ):
        check_choice("cross_check", cross_check, values(CrossCheck))
        check_choice("mirroring", mirroring, values(Mirroring))
        if bundle is None:
            self.bundle = base_model_bundle()
        else:
            self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.device = device
        self.cross_check = cross_check
        self.mirroring = str(mirroring)
        t0 = time.perf_counter()
        self.seg_model = self.bundle.segmentation_model(device, mirroring)
        self.ensemble = self.bundle.ensemble(device)
        fb = self.bundle.fallback(device)
        self.fallback = fb if fb is not None and fb.beats_prior else None
        self.fallback_note = (
            None
            if fb is None or fb.beats_prior
            else "the bundle's axial fallback did not beat the prior in its validation: not used"
        )
        self.load_seconds = time.perf_counter() - t0
        self.versions = {
            **package_versions(),
            "bundle_spineseg": str(self.bundle.manifest.get("versions", {}).get("spineseg")),
        }

    def _cross_checked(self, landmarks: LandmarkSet, study: Study) -> LandmarkSet:
        """The Sagittal T2's level names checked against the Sagittal T1's (:class:`CrossCheck`): a second
        segmentation, so on a CPU by default only when the T2's names are unsure (a T2 that missed the sacrum,
        named from a T1 that found it)."""
        mode = CrossCheck(self.cross_check)
        if mode is CrossCheck.AUTO:
            on_cuda = str(getattr(self.seg_model, "device", "")).startswith("cuda")
            mode = CrossCheck.ALWAYS if on_cuda else CrossCheck.UNSURE
        if not landmarks.levels or mode is CrossCheck.NEVER or (mode is CrossCheck.UNSURE and not landmarks.unsure):
            return landmarks
        _, stack = study.largest_stack(SeriesKind.SAGITTAL_T1)
        if stack is None:
            return landmarks
        from spine_seg.landmarks.structures import landmarks_from_label_volume, reconcile_sagittal

        check_segmentation_budget(self.seg_model, stack)
        other = landmarks_from_label_volume(self.seg_model.predict_stack(stack))
        return reconcile_sagittal(landmarks, other, "Sagittal T1")

    def prior_rows(self, study_id: str) -> pd.DataFrame | None:
        """The bundle's training prior as 25 rows: the documented answer where nothing better exists (None
        for a bundle without grading: it has no competition rows to give)."""
        from spine_seg.grading.ensemble import submission_from_rows

        if self.ensemble is None:
            return None
        sub, _ = submission_from_rows([study_id], None, self.ensemble.prior)
        return sub

    def predict(
        self,
        path: str | Path,
        series_csv: str | Path | None = None,
        progress: ProgressCallback | None = None,
        study: Study | None = None,
    ) -> StudyResult:
        """All stages for one study folder (see the module doc); raises :class:`StageError` on failure."""
        return self.predict_with_study(path, series_csv, progress, study)[0]

    def predict_with_study(
        self,
        path: str | Path,
        series_csv: str | Path | None = None,
        progress: ProgressCallback | None = None,
        study: Study | None = None,
    ) -> tuple[StudyResult, Study]:
        """:meth:`predict`, also returning the ingested :class:`Study`, so that writing the report reads the
        headers once and with the same series kinds (``series_csv``) as the prediction."""
        run = _StudyRun(Path(path), progress)
        with run.stage("ingest"):
            if study is None:
                study = load_study(run.folder, series_csv)
            run.warnings += [f"skipped file {s.path.name}: {s.reason}" for s in study.skipped]
            run.warnings += list(study.warnings)
        t2_series, t2_stack = _segmentation_stack(study)
        if t2_stack is None:
            run.fallbacks.append(
                "no Sagittal T2/STIR series: no segmentation or landmarks; every row from the training prior"
            )
        else:
            self._locate(run, study, t2_stack)
        crops: dict[tuple[str, str], np.ndarray] = {}
        sources: dict[str, CropSource] = {}
        needs_fallback: dict[str, np.ndarray] = {}
        submission: pd.DataFrame | None = None
        row_sources: dict[str, str] = {}
        if self.ensemble is None:
            run.fallbacks.append(NO_GRADING_NOTE)
        else:
            if run.landmarks is not None and run.landmarks.levels and run.projection is not None:
                with run.stage("crop"):
                    spinal_series = t2_series.series_id if t2_series is not None else None
                    plan = plan_crops(run.landmarks, run.projection, self.ensemble.specs, spinal_series)
                    run.fallbacks += plan.fallbacks
                    needs_fallback = dict(plan.axial_fallback)
                    self._cut(study, plan, crops, sources)
            with run.stage("grade"):
                fb_probs = self._axial_fallback(run, study, needs_fallback)
                pred = self.ensemble.predict_study(study.study_id, crops, fb_probs)
            row_sources = dict(pred.sources)
            submission = pred.submission.reset_index(drop=True)
        result = StudyResult(
            study_id=study.study_id,
            folder=run.folder,
            submission=submission,
            sources=row_sources,
            landmarks=run.landmarks,
            projection=run.projection,
            segmentation=run.label_volume,
            segmentation_stack=run.seg_info,
            crops={r: c for r, c in sources.items() if row_sources.get(r) == SOURCE_MODEL},
            series={k.value: tuple(s.series_id for s in study.series_of_kind(k)) for k in SeriesKind},
            fallbacks=tuple(dict.fromkeys(run.fallbacks)),
            warnings=tuple(dict.fromkeys(run.warnings)),
            timings_s=run.timings,
            versions=self.versions,
            bundle=self.bundle.summary(),
            measurements=run.measurements,
            measured_grades=run.measured_grades,
        )
        return result, study

    def _locate(self, run: _StudyRun, study: Study, t2_stack: Any) -> None:
        """Segment the Sagittal T2/STIR stack, find the levels in it and project them into the other series."""
        from spine_seg.landmarks.structures import landmarks_from_label_volume

        with run.stage("segment"):
            check_segmentation_budget(self.seg_model, t2_stack)
            pixels = t2_stack.load()  # once: the measurements read the same pixels (nnU-Net copies its input)
            label_volume = run.label_volume = self.seg_model.predict_stack(t2_stack, pixels)
            run.seg_info = {
                "series_id": t2_stack.series_id,
                "stack": t2_stack.index,
                "shape_kji": list(t2_stack.shape),
                "spacing_mm": [round(v, 4) for v in t2_stack.spacing_mm],
                "labels_present": list(label_volume.present()),
            }
        with run.stage("landmarks"):
            landmarks = run.landmarks = self._cross_checked(landmarks_from_label_volume(label_volume), study)
            run.warnings += list(landmarks.warnings)
            if not landmarks.levels:
                reason = landmarks.missing[0].reason if landmarks.missing else "no disc"
                run.fallbacks.append(
                    f"no disc level found in the segmentation ({reason}): every row from the training prior"
                )
            else:
                run.fallbacks += [
                    f"{m.level}: no landmark ({m.reason}): its rows from the training prior" for m in landmarks.missing
                ]
            if landmarks.unsure and landmarks.levels:
                run.warnings.append(
                    "level names unsure (no sacrum anchor or inconsistent evidence): grades may be "
                    "shifted by a level; subarticular rows from the axial fallback"
                )
        if landmarks.levels:
            with run.stage("measure"):
                from spine_seg.measurements import measure_spine
                from spine_seg.measurements.grades import measured_grades
                from spine_seg.measurements.measure import NO_AXIAL_SEGMENTATION, NO_AXIAL_SERIES

                try:
                    axial = study.series_of_kind(SeriesKind.AXIAL_T2)
                    run.measurements = measure_spine(
                        label_volume,
                        landmarks,
                        pixels,
                        axial_reason=NO_AXIAL_SEGMENTATION if axial else NO_AXIAL_SERIES,
                    )
                except (ValueError, IndexError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    # the levels and any grades stand without them: say so, do not fail the study
                    log.warning("%s: measurements failed: %s: %s", run.folder.name, type(exc).__name__, exc)
                    run.warnings.append(f"measurements failed: {type(exc).__name__}: {exc}")
                else:
                    run.measured_grades = measured_grades(run.measurements)
                    run.warnings += list(run.measurements.warnings)
        with run.stage("project"):
            run.projection = project_landmarks(landmarks, study)
            run.warnings += list(run.projection.warnings)

    def _cut(
        self, study: Study, plan: CropPlan, crops: dict[tuple[str, str], np.ndarray], sources: dict[str, CropSource]
    ) -> None:
        """Cut the plan's crops (``crops``) and record where each was cut (``sources``), in the plan's order."""
        from spine_seg.grading.crops import crop_series

        cache: dict = {}
        t2_series, _ = _segmentation_stack(study)
        by_id: dict[str, Series] = {s.series_id: s for s in study.series}
        for pc in plan.crops:
            series = t2_series if pc.series_id is None else by_id[pc.series_id]
            assert series is not None, "a crop on the segmented series needs one"  # plan_crops: only with landmarks
            spec = self.ensemble.specs[GROUP_OF_CONDITION[pc.condition]]
            c = crop_series(series, pc.xyz_lps_mm, spec, flip=pc.flip, cache=cache)
            crops[(pc.condition, pc.level)] = c.pixels
            sources[row_id(study.study_id, pc.condition, pc.level)] = CropSource(
                pc.condition,
                pc.level,
                c.series_id,
                c.stack_index,
                c.instance_number,
                _xyz(pc.xyz_lps_mm),
                c.xy_px[0],
                c.xy_px[1],
                c.distance_mm,
                c.flipped,
            )

    def _axial_fallback(
        self, run: _StudyRun, study: Study, needs_fallback: dict[str, np.ndarray]
    ) -> dict[tuple[str, str], np.ndarray]:
        """The axial fallback model's probabilities for the levels the plan sent to it (none without a model)."""
        if not needs_fallback:
            return {}
        if self.fallback is None:
            run.fallbacks.append(
                self.fallback_note or "no axial fallback in the bundle: those subarticular rows from the training prior"
            )
            return {}
        fb_probs, notes = self.fallback.predict(study, needs_fallback)
        run.fallbacks += [f"axial fallback: {n}; those subarticular rows from the training prior" for n in notes]
        return fb_probs


def _xyz(v: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(c) for c in v)
    return x, y, z


@dataclasses.dataclass
class _StudyRun:
    """What one study's stages gather on the way: timings, fallbacks, warnings and the intermediate results."""

    folder: Path
    progress: ProgressCallback | None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    fallbacks: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    landmarks: LandmarkSet | None = None
    projection: StudyProjection | None = None
    label_volume: Any = None
    seg_info: dict[str, Any] | None = None
    measurements: SpineMeasurements | None = None
    measured_grades: tuple[MeasuredGrade, ...] = ()

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return _stage(name, self.timings, self.progress, self.folder.name)


def predict_study(
    path: str | Path,
    bundle: ModelBundle | str | Path | None = None,
    *,
    series_csv: str | Path | None = None,
    device: str = "auto",
) -> StudyResult:
    """One study folder → :class:`StudyResult` (loads the bundle's models; use :class:`Predictor` for many).
    Without ``bundle``: the shipped base model's levels, measurements and measured grades, no competition rows."""
    return Predictor(bundle, device).predict(path, series_csv)
