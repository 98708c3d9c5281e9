"""The coded concepts of spineseg's DICOM outputs, keyed by spineseg's own names, in one table.

Standard codes come from pydicom's tables of DICOM's coding schemes (``pydicom.sr.codedict.codes``: SNOMED CT
as ``SCT``, DICOM as ``DCM``, UCUM), looked up by attribute, so a misspelt concept fails at import instead of
writing a wrong number. Where those tables hold no concept (a generic intervertebral disc, the intervertebral
foramen, the lateral recess, the competition's probabilities), spineseg uses its own private coding scheme
:data:`PRIVATE_SCHEME` (DICOM PS3.16 8.2: designators starting with ``99`` are private), never an invented
SNOMED number.

Segment codes cover both label maps spineseg models use: the level-specific one
(:data:`spine_seg.core.labels.SEG_LABELS`: L1–L5, sacrum, the five lumbar discs, spinal canal) and a generic one
(vertebra, sacrum, disc, spinal canal). A name missing here still gets a segment, typed by the private
concept of that name (:func:`structure_code`).
"""

from __future__ import annotations

from dataclasses import dataclass

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES

#: spineseg's private coding scheme (DICOM: private designators start with "99").
PRIVATE_SCHEME = "99SPINESEG"


def private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, PRIVATE_SCHEME, meaning)


#: Segmented property category of every segment.
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure

_LEVEL_DISC = dict(
    zip(
        LEVELS,
        (codes.SCT.L1L2Disc, codes.SCT.L2L3Disc, codes.SCT.L3L4Disc, codes.SCT.L4L5Disc, codes.SCT.L5S1Disc),
        strict=True,
    )
)
#: The level itself (a finding site): "Level of L4/L5 intervertebral disc".
LEVEL_SITE = dict(
    zip(
        LEVELS,
        (
            codes.SCT.LevelOfL1L2IntervertebralDisc,
            codes.SCT.LevelOfL2L3IntervertebralDisc,
            codes.SCT.LevelOfL3L4IntervertebralDisc,
            codes.SCT.LevelOfL4L5IntervertebralDisc,
            codes.SCT.LevelOfL5S1IntervertebralDisc,
        ),
        strict=True,
    )
)
#: The disc structure of each level (the SR's landmark finding type).
LEVEL_DISC = _LEVEL_DISC

#: Segment name → segmented property type, for both label maps.
STRUCTURE_CODES: dict[str, object] = {
    "L1": codes.SCT.L1Vertebra,
    "L2": codes.SCT.L2Vertebra,
    "L3": codes.SCT.L3Vertebra,
    "L4": codes.SCT.L4Vertebra,
    "L5": codes.SCT.L5Vertebra,
    "sacrum": codes.SCT.Sacrum,
    **{f"disc_{lv}": code for lv, code in _LEVEL_DISC.items()},
    "spinal_canal": codes.SCT.SpinalCanalStructure,
    # the generic label map
    "vertebra": codes.SCT.Vertebra,
    "disc": private("IV-DISC", "Intervertebral disc"),
}


def structure_code(name: str):
    """The segmented property type of a label name (a private concept named after it when not in the table)."""
    if name in STRUCTURE_CODES:
        return STRUCTURE_CODES[name]
    return private(f"S-{name}"[:16], name.replace("_", " "))


# ---------------------------------------------------------------------------------------------------------
# findings (the SR)


@dataclass(frozen=True)
class ConditionCodes:
    """How one competition condition is coded: a stenosis (SCT) at a site, with a laterality for sided ones."""

    site: object
    laterality: object | None


FINDING_TYPE = codes.SCT.Stenosis
_FORAMEN = private("IV-FORAMEN", "Intervertebral foramen")
_LATERAL_RECESS = private("LAT-RECESS", "Lateral recess of spinal canal")
CONDITION_CODES: dict[str, ConditionCodes] = {
    "spinal_canal_stenosis": ConditionCodes(codes.SCT.SpinalCanalStructure, None),
    "left_neural_foraminal_narrowing": ConditionCodes(_FORAMEN, codes.SCT.Left),
    "right_neural_foraminal_narrowing": ConditionCodes(_FORAMEN, codes.SCT.Right),
    "left_subarticular_stenosis": ConditionCodes(_LATERAL_RECESS, codes.SCT.Left),
    "right_subarticular_stenosis": ConditionCodes(_LATERAL_RECESS, codes.SCT.Right),
}
assert tuple(CONDITION_CODES) == CONDITIONS

SEVERITY = codes.SCT.Severity
#: The competition's classes as SNOMED CT severities ("Normal/Mild" is coded Mild: the class includes no finding).
SEVERITY_CODES = dict(zip(SEVERITIES, (codes.SCT.Mild, codes.SCT.Moderate, codes.SCT.Severe), strict=True))
#: The three probabilities of a location (numeric measurements, unit "no units").
PROBABILITY_CODES = {
    "normal_mild": private("P-NORMAL-MILD", "Probability of Normal/Mild"),
    "moderate": private("P-MODERATE", "Probability of Moderate"),
    "severe": private("P-SEVERE", "Probability of Severe"),
}
#: Where a row's probabilities came from (result.json's ``source``): a qualitative evaluation.
ROW_SOURCE = private("ROW-SOURCE", "Source of probabilities")
ROW_SOURCE_CODES = {
    "model": private("SRC-MODEL", "Grading model"),
    "axial_fallback": private("SRC-AX-FALLBACK", "Axial fallback model"),
    "prior": private("SRC-PRIOR", "Training prior"),
}
LANDMARK_CONFIDENCE = private("LM-CONFIDENCE", "Landmark confidence")
#: Landmark kinds → (finding type of the point, tracking-id suffix).
DISC_POINT = "disc centroid"
CANAL_POINT = "canal point"
NO_UNITS = codes.UCUM.NoUnits
#: UCUM unit of each measurement unit spineseg writes (``spine_seg.measurements.types.UCUM``'s keys).
UNIT_CODES = {
    "mm": codes.UCUM.Millimeter,
    "mm2": codes.UCUM.SquareMillimeter,
    "deg": codes.UCUM.Degree,
    "%": codes.UCUM.Percent,
    "1": codes.UCUM.NoUnits,
}
#: Each measurement's concept (private: DICOM's tables hold no "CSF-filled fraction of the canal" and the like).
MEASUREMENT_CODES = {
    "canal_ap_mm": private("M-CANAL-AP", "Spinal canal antero-posterior diameter"),
    "csf_ap_mm": private("M-CSF-AP", "Dural sac CSF antero-posterior diameter"),
    "canal_csa_mm2": private("M-CANAL-CSA", "Spinal canal cross-sectional area"),
    "dural_sac_csa_axial_mm2": private("M-SAC-CSA-AX", "Dural sac cross-sectional area on the axial series"),
    "canal_ap_ratio": private("M-CANAL-RATIO", "Canal diameter over mid-vertebral diameter"),
    "csf_ap_ratio": private("M-CSF-RATIO", "CSF diameter over mid-vertebral CSF diameter"),
    "csf_fraction": private("M-CSF-FRACTION", "CSF-filled fraction of the canal diameter"),
    "disc_height_anterior_mm": private("M-DISC-H-ANT", "Anterior disc height"),
    "disc_height_middle_mm": private("M-DISC-H-MID", "Middle disc height"),
    "disc_height_posterior_mm": private("M-DISC-H-POST", "Posterior disc height"),
    "disc_height_index": private("M-DHI", "Disc height index"),
    "disc_csf_signal_ratio": private("M-DISC-SIGNAL", "Disc signal relative to CSF"),
    "listhesis_mm": private("M-LISTHESIS-MM", "Vertebral translation"),
    "listhesis_percent": private("M-LISTHESIS-PCT", "Vertebral translation, percent of endplate"),
    "body_height_anterior_mm": private("M-BODY-H-ANT", "Anterior vertebral body height"),
    "body_height_middle_mm": private("M-BODY-H-MID", "Middle vertebral body height"),
    "body_height_posterior_mm": private("M-BODY-H-POST", "Posterior vertebral body height"),
    "lordosis_l1_s1_deg": private("M-LORDOSIS", "Lumbar lordosis L1-S1"),
    "disc_angle_l1_l2_to_l5_s1_deg": private("M-DISC-ANGLE", "Angle L1/L2 to L5/S1 disc planes"),
}
#: The measured grades (qualitative evaluations of the measurement groups): finding → concept, class → value.
MEASURED_GRADE_CODES = {
    "spinal_canal_stenosis": private("G-CANAL", "Measured spinal canal stenosis"),
    "disc_narrowing": private("G-NARROWING", "Measured disc narrowing"),
    "listhesis": private("G-LISTHESIS", "Measured listhesis (Meyerding)"),
}
MEASURED_CLASS_CODES = {
    **SEVERITY_CODES,
    "absent": codes.SCT.Absent,
    "present": codes.SCT.Present,
    "none": private("MEYERDING-0", "No listhesis"),
    "grade_1": private("MEYERDING-1", "Meyerding grade I"),
    "grade_2": private("MEYERDING-2", "Meyerding grade II"),
    "grade_3_or_more": private("MEYERDING-3+", "Meyerding grade III or more"),
}
VERTEBRA_SITE = {
    "L1": codes.SCT.L1Vertebra,
    "L2": codes.SCT.L2Vertebra,
    "L3": codes.SCT.L3Vertebra,
    "L4": codes.SCT.L4Vertebra,
    "L5": codes.SCT.L5Vertebra,
}
LUMBAR_SPINE = codes.SCT.LumbarSpine
CUBIC_MM = codes.UCUM.CubicMillimeter
VOLUME = codes.SCT.Volume
PROCEDURE = codes.SCT.ImagingProcedure
ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "CONDITION_CODES",
    "FINDING_TYPE",
    "LEVEL_DISC",
    "LEVEL_SITE",
    "PRIVATE_SCHEME",
    "PROBABILITY_CODES",
    "ROW_SOURCE_CODES",
    "SEVERITY_CODES",
    "STRUCTURE_CODES",
    "private",
    "structure_code",
]
