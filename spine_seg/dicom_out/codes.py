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
