"""The findings and landmarks as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

Why an SR: it is the standard carrier of an algorithm's findings that a PACS stores next to the images and a
viewer (3D Slicer's QuantitativeReporting, OHIF) lists, coded so that software can read it back; a
``result.json`` is ours alone.

Content (all in one Imaging Measurement Report; every group names spineseg and the bundle as its algorithm):

* **landmarks**: per level found, two Planar ROI groups (TID 1410) whose region is a SCOORD3D POINT in the
  segmented Sagittal T2's frame of reference (LPS mm, as in ``result.json``): ``<level> disc centroid``
  (finding type: that level's disc) and ``<level> canal point`` (spinal canal), each with the level as
  finding site and the landmark's confidence as a measurement;
* **segments**: per non-empty segment of the SEG, a Volumetric ROI group (TID 1411) referencing that segment,
  with its volume in mm³;
* **measurements**: per measured level a Measurements group (TID 1501) tracked as ``measurements <level>``
  (finding type: that level's disc, site: the level) with every valid measurement as a numeric item in its
  UCUM unit (mm, mm2, deg, %, 1) and the measured grades as qualitative evaluations; per vertebra
  (``measurements L4``: body heights, mid-vertebral canal) and for the lumbar spine (lordosis);
* **findings** (only with a grading bundle): per condition and level (25), a Measurements group (TID 1501) tracked as
  ``<condition> <level>`` (the competition's names): finding type Stenosis, finding sites the structure (with
  laterality for the sided conditions) and the level, the severity (argmax of the probabilities, as
  ``StudyResult.grade``) as a qualitative evaluation, where the row came from (model, axial fallback,
  prior), and the three probabilities as numeric measurements (no units), citing the image its crop was cut
  from where that reference is unambiguous (:mod:`spine_seg.dicom_out.sources`).

Evidence: the segmented series' instances and the SEG (and any cited crop image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    GraphicTypeValues3D,
    ImageRegion3D,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    ReferencedSegment,
    SourceImageForMeasurementGroup,
    SourceSeriesForSegmentation,
    TrackingIdentifier,
    VolumetricROIMeasurementsAndQualitativeEvaluations,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as pcodes

from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
from spine_seg.core.errors import UsageError
from spine_seg.dicom_out import codes
from spine_seg.measurements import Measurement as MeasuredValue
from spine_seg.report.result import SOURCE_PRIOR, StudyResult

SR_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "spineseg findings"


def finding_id(condition: str, level: str) -> str:
    """Tracking identifier of a finding group: the competition's names, so a reader maps it back exactly."""
    return f"{condition} {level}"


def build_sr(
    result: StudyResult,
    sources: Sequence[Dataset],
    seg: Dataset | None,
    *,
    version: str,
    bundle_name: str,
    crop_images: Mapping[str, Dataset] | None = None,
) -> Comprehensive3DSR:
    """The SR of one study. ``sources``: the segmented Sagittal T2 stack's completed headers (the image library
    and evidence; their frame of reference is the landmarks'); ``seg``: the SEG written from them, or None;
    ``crop_images``: row_id → completed header of the image its crop came from (cited when unambiguous).

    Long on purpose: the SR's content tree is built top-down as the standard nests it.
    """
    if not sources:
        raise UsageError("an SR needs at least one source image as evidence")
    frame_of_reference = str(sources[0].FrameOfReferenceUID)
    algo = AlgorithmIdentification(name="spineseg", version=version, parameters=[f"bundle={bundle_name}"])
    groups: list = []

    # landmarks
    if result.landmarks is not None:
        for lm in result.landmarks.levels:
            site = [FindingSite(codes.LEVEL_SITE[lm.level])]
            for kind, xyz, finding in (
                (codes.DISC_POINT, lm.disc_xyz, codes.LEVEL_DISC[lm.level]),
                (codes.CANAL_POINT, lm.canal_xyz, pcodes.SCT.SpinalCanalStructure),
            ):
                groups.append(
                    PlanarROIMeasurementsAndQualitativeEvaluations(
                        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=f"{lm.level} {kind}"),
                        referenced_region=ImageRegion3D(
                            GraphicTypeValues3D.POINT, np.asarray(xyz, dtype=float).reshape(1, 3), frame_of_reference
                        ),
                        finding_type=finding,
                        finding_sites=site,
                        algorithm_id=algo,
                        measurements=[
                            Measurement(
                                codes.LANDMARK_CONFIDENCE, float(lm.confidence), codes.NO_UNITS, algorithm_id=algo
                            )
                        ],
                    )
                )

    # segments of the SEG
    if seg is not None and result.segmentation is not None:
        lv = result.segmentation
        voxel_mm3 = float(np.prod(lv.spacing_mm))
        counts = lv.voxel_counts()
        for desc in seg.SegmentSequence:
            name = str(desc.SegmentLabel)
            n_vox = counts.get(name, 0)
            if n_vox == 0:
                continue
            groups.append(
                VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=f"segment {name}"),
                    referenced_segment=ReferencedSegment(
                        sop_class_uid=seg.SOPClassUID,
                        sop_instance_uid=seg.SOPInstanceUID,
                        segment_number=int(desc.SegmentNumber),
                        source_series=SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID)),
                    ),
                    finding_type=codes.structure_code(name),
                    algorithm_id=algo,
                    measurements=[Measurement(codes.VOLUME, n_vox * voxel_mm3, codes.CUBIC_MM, algorithm_id=algo)],
                )
            )

    # findings (only with competition rows: a result without a grading bundle has none to report)
    cited = _unambiguous(sources, crop_images or {})
    for condition in CONDITIONS if result.has_rows else ():
        cc = codes.CONDITION_CODES[condition]
        for level in LEVELS:
            rid = f"{result.study_id}_{condition}_{level}"
            probs = result.probabilities(condition, level)
            severity = SEVERITIES[int(np.argmax(probs))]
            source = result.sources.get(rid, SOURCE_PRIOR)
            image = cited.get(rid)
            groups.append(
                MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=finding_id(condition, level)),
                    finding_type=codes.FINDING_TYPE,
                    finding_sites=[
                        FindingSite(cc.site, laterality=cc.laterality),
                        FindingSite(codes.LEVEL_SITE[level]),
                    ],
                    algorithm_id=algo,
                    qualitative_evaluations=[
                        QualitativeEvaluation(codes.SEVERITY, codes.SEVERITY_CODES[severity]),
                        QualitativeEvaluation(
                            codes.ROW_SOURCE, codes.ROW_SOURCE_CODES.get(source, codes.ROW_SOURCE_CODES[SOURCE_PRIOR])
                        ),
                    ],
                    measurements=[
                        Measurement(codes.PROBABILITY_CODES[s], float(p), codes.NO_UNITS, algorithm_id=algo)
                        for s, p in zip(SEVERITIES, probs, strict=True)
                    ],
                    source_images=[SourceImageForMeasurementGroup.from_source_image(image)]
                    if image is not None
                    else None,
                )
            )

    groups += _measurement_groups(result, algo)  # after the findings: a reader of the 25 finds them first

    observer = ObserverContext(
        observer_type=pcodes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="spineseg", manufacturer_name="spineseg", model_name=bundle_name[:64] or "spineseg"
        ),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=groups,
        referenced_images=list(sources),
    )
    in_sources = {id(d) for d in sources}
    evidence = [
        *sources,
        *([seg] if seg is not None else []),
        *(ds for i, ds in {id(d): d for d in cited.values()}.items() if i not in in_sources),
    ]
    return Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="spineseg",
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
    )


def measurement_id(site: str) -> str:
    """Tracking identifier of a measurement group: ``measurements l4_l5`` (a level), ``measurements L4`` (a
    vertebra) or ``measurements lumbar spine``."""
    return f"measurements {site}"


def _numbers(values: Mapping[str, MeasuredValue], algo: AlgorithmIdentification) -> list[Measurement]:
    """The valid measurements as numeric content items (UCUM units); invalid ones are left out: the SR
    carries numbers, result.json says why a number is missing."""
    out = []
    for name, m in values.items():
        if m.valid and m.value is not None and np.isfinite(m.value) and name in codes.MEASUREMENT_CODES:
            out.append(
                Measurement(codes.MEASUREMENT_CODES[name], float(m.value), codes.UNIT_CODES[m.unit], algorithm_id=algo)
            )
    return out


def _measurement_groups(result: StudyResult, algo: AlgorithmIdentification) -> list:
    """One group per measured level (its numbers and its measured grades), per vertebra and for the spine."""
    ms = result.measurements
    if ms is None:
        return []
    groups: list = []
    grades: dict[str, list[QualitativeEvaluation]] = {}
    for g in result.measured_grades:
        if g.grade is not None:
            grades.setdefault(g.site, []).append(
                QualitativeEvaluation(codes.MEASURED_GRADE_CODES[g.finding], codes.MEASURED_CLASS_CODES[g.grade])
            )
    for site in ms.levels:
        numbers = _numbers(site.values, algo)
        if not numbers and site.site not in grades:
            continue
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=measurement_id(site.site)),
                finding_type=codes.LEVEL_DISC[site.site],
                finding_sites=[FindingSite(codes.LEVEL_SITE[site.site])],
                algorithm_id=algo,
                measurements=numbers or None,
                qualitative_evaluations=grades.get(site.site) or None,
            )
        )
    for site in ms.vertebrae:
        numbers = _numbers(site.values, algo)
        if numbers and site.site in codes.VERTEBRA_SITE:
            groups.append(
                MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=measurement_id(site.site)),
                    finding_type=codes.VERTEBRA_SITE[site.site],
                    algorithm_id=algo,
                    measurements=numbers,
                )
            )
    spine = _numbers(ms.spine, algo)
    if spine:
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=measurement_id("lumbar spine")),
                finding_type=codes.LUMBAR_SPINE,
                algorithm_id=algo,
                measurements=spine,
            )
        )
    return groups


def measurements_from_sr(sr: Dataset) -> dict[str, dict[str, tuple[float, str]]]:
    """``measurement_id`` → {concept meaning: (value, UCUM unit)} read back from an SR by :func:`build_sr`."""
    content = sr.content if hasattr(sr, "content") else hd.sr.srread(sr).content  # pragma: no cover
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for group in content.get_image_measurement_groups():
        key = str(group.tracking_identifier)
        if not key.startswith("measurements "):
            continue
        out[key] = {str(m.name.meaning): (float(m.value), str(m.unit.value)) for m in group.get_measurements()}
        for qe in group.get_qualitative_evaluations():
            out[key][str(qe.name.meaning)] = (float("nan"), str(qe.value.meaning))
    return out


def _unambiguous(sources: Sequence[Dataset], crop_images: Mapping[str, Dataset]) -> dict[str, Dataset]:
    """The crop images that can be cited: those of the source series (cited anyway), and those of other
    series whose SOP Instance UID no image of another series among the sources and crop images shares (the
    competition repeats ``<study>.1.<instance>`` in every series)."""
    source_series = {str(ds.SeriesInstanceUID) for ds in sources}
    series_of: dict[str, set[str]] = {}
    for ds in [*sources, *crop_images.values()]:
        series_of.setdefault(str(ds.SOPInstanceUID), set()).add(str(ds.SeriesInstanceUID))
    return {
        rid: ds
        for rid, ds in crop_images.items()
        if str(ds.SeriesInstanceUID) in source_series or len(series_of[str(ds.SOPInstanceUID)]) == 1
    }


def findings_from_sr(sr: Dataset) -> dict[str, dict]:
    """``finding_id`` → {"severity": name, "probabilities": {severity: p}, "source": meaning} read back from an
    SR written by :func:`build_sr` (for checks and for readers)."""
    content = sr.content if hasattr(sr, "content") else hd.sr.srread(sr).content  # pragma: no cover
    severity_of = {c.value: s for s, c in codes.SEVERITY_CODES.items()}
    prob_of = {c.value: s for s, c in codes.PROBABILITY_CODES.items()}
    out: dict[str, dict] = {}
    for group in content.get_image_measurement_groups():
        key = str(group.tracking_identifier)
        if key.startswith("measurements "):
            continue  # measurements_from_sr reads those
        entry: dict = {"probabilities": {}}
        for qe in group.get_qualitative_evaluations():
            if qe.name == codes.SEVERITY:
                entry["severity"] = severity_of[qe.value.value]
            elif qe.name == codes.ROW_SOURCE:
                entry["source"] = qe.value.meaning
        for m in group.get_measurements():
            if m.name.value in prob_of:
                entry["probabilities"][prob_of[m.name.value]] = float(m.value)
        out[key] = entry
    return out


__all__ = [
    "SR_SERIES_DESCRIPTION",
    "SR_SERIES_NUMBER",
    "build_sr",
    "finding_id",
    "findings_from_sr",
    "measurement_id",
    "measurements_from_sr",
]
