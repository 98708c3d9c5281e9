"""What the landmark stage returns (one level's landmarks, a missing level, the set), and the constants
of lumbar anatomy it measures against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import (
    SEG_DISC_OF_LEVEL,
    SEG_LABELS,
)
from spine_seg.landmarks.frame import _rounded, disc_frame

#: Lumbar vertebrae and the sacrum, cranial to caudal, as spineseg labels them.
VERTEBRA_NAMES: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5", "sacrum")


VERTEBRA_LABELS: tuple[int, ...] = tuple(SEG_LABELS[n] for n in VERTEBRA_NAMES)


DISC_LABELS: tuple[int, ...] = tuple(SEG_DISC_OF_LEVEL[lv] for lv in LEVELS)


LEVEL_OF_DISC_LABEL: dict[int, str] = {v: k for k, v in SEG_DISC_OF_LEVEL.items()}


CANAL_LABEL = SEG_LABELS["spinal_canal"]


SACRUM_LABEL = SEG_LABELS["sacrum"]


#: The vertebra above / below each level's disc.
UPPER_VERTEBRA: dict[str, str] = dict(zip(LEVELS, VERTEBRA_NAMES[:5], strict=True))


LOWER_VERTEBRA: dict[str, str] = dict(zip(LEVELS, VERTEBRA_NAMES[1:], strict=True))


#: Disc-to-disc distance assumed when the mask has too few discs to measure it (adult lumbar spine:
#: about 30–40 mm between neighbouring disc centres).
PRIOR_DISC_SPACING_MM = 36.0


#: Components closer than this fraction of the typical spacing along the spine are fragments of one structure.
FRAGMENT_FRACTION = 0.35


#: Lateral distance of the neural foramen from the midline when the mask cannot measure it. Lumbar
#: foramina lie just lateral to the pedicles, about 15–22 mm from the midline; the ten annotated foramina
#: of study 100206310 lie 13–22 mm (mean 16.6 mm) from its spinal keypoints, the phantom's 16–18.5 mm.
DEFAULT_FORAMEN_OFFSET_MM = 18.0


#: Foramen offset as a fraction of the discs' median half-width (a disc is as wide as its vertebral body,
#: and the foramen sits over its posterolateral corner); clamped to FORAMEN_OFFSET_RANGE_MM. Disc, not
#: vertebra, width: vertebra masks (SPIDER's among them) hold the transverse processes.
FORAMEN_OFFSET_PER_HALF_WIDTH = 0.75


FORAMEN_OFFSET_RANGE_MM = (14.0, 24.0)


#: Distance of the spinal canal's centre behind the vertebral bodies' posterior wall, for masks without a
#: canal label: the lumbar canal is about 15–18 mm deep, so its centre lies about 8 mm behind the wall (the
#: synthetic phantom puts it 8–10 mm behind: 1.5 mm + half a 13–17 mm canal).
CANAL_BEHIND_BODY_MM = 8.0
#: How far (mm, left–right) a canal point may move to the study's mid-sagittal plane: half the width of a
#: lumbar dural sac (about 15 mm), so the point stays inside that level's canal.
CANAL_MIDLINE_MAX_SHIFT_MM = 7.5


#: Confidence factor of a disc placed between vertebral bodies (the mask has no disc to measure).
VERTEBRA_DISC_CONFIDENCE = 0.7


#: Typical lumbar disc height, to tell a disc's gap between two bodies from a missing vertebra.
TYPICAL_DISC_HEIGHT_MM = 10.0


#: Where the sacrum anchor puts the lowest disc, from its centre's height above the sacrum's top, as a
#: fraction of the disc spacing. An L5/S1 disc rests on the sacrum: measured −0.3 to 0.26 of the spacing
#: (−11 to 9 mm) on the real volumes of benchmarks/bench_real_landmarks.py, three models' segmentations. An
#: L4/L5 whose L5/S1 below it was not segmented (thin, dark, or a transitional junction) has the L5 body in
#: between, yet measures only 0.33–0.87 (12–33 mm), not a whole spacing: the sacrum's back rises behind L5
#: and the top is taken at its 98th percentile. The cut sits between the two; in the band around it neither
#: reading is trusted, and the names are unsure.
SACRUM_GAP_CUT = 0.3
SACRUM_GAP_DOUBT = (0.2, 0.4)


#: Components smaller than this fraction of the typical disc (or vertebra) are treated as spurious.
MIN_COMPONENT_FRACTION = 0.1


MIN_COMPONENT_MM3 = 100.0


@dataclass(frozen=True)
class LevelLandmark:
    """One disc level in patient space, with how far it can be trusted and why not more."""

    level: str
    xyz_lps_mm: tuple[float, float, float]  # disc centroid
    normal_lps: tuple[float, float, float]  # unit normal of the disc plane, pointing superior
    canal_xyz_lps_mm: tuple[float, float, float]
    # "canal_label", "disc_posterior_margin", "keypoint" or "vertebra_posterior_estimate" (a mask without
    # discs or canal: half the bodies' depth + CANAL_BEHIND_BODY_MM behind the disc point, in the disc plane)
    canal_source: str
    upper_vertebra_xyz_lps_mm: tuple[float, float, float] | None = None
    lower_vertebra_xyz_lps_mm: tuple[float, float, float] | None = None
    disc_voxels: int = 0
    disc_volume_mm3: float = 0.0
    confidence: float = 1.0
    reasons: tuple[str, ...] = ()  # why confidence is below 1
    mask_level: str | None = None  # what the mask's labels call this disc (None: not from a mask)
    foramen_offset_mm: float | None = None  # lateral distance of the foramina from the canal point
    # "disc_width" (the study's median), "body_width" (vertebral bodies', for masks without discs), "given"
    # or "default"
    foramen_offset_source: str = "default"
    # how far (mm, along the disc plane's L–R axis, + = patient's left) the canal point was moved onto the
    # study's mid-sagittal plane, where readers mark the spinal canal; the level's own canal centre, which
    # the foramina and lateral recesses sit either side of, is ``canal_centre_xyz``
    canal_midline_shift_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; valid: {list(LEVELS)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    @property
    def disc_xyz(self) -> np.ndarray:
        return np.asarray(self.xyz_lps_mm, dtype=float)

    @property
    def canal_xyz(self) -> np.ndarray:
        return np.asarray(self.canal_xyz_lps_mm, dtype=float)

    @property
    def normal(self) -> np.ndarray:
        return np.asarray(self.normal_lps, dtype=float)

    @property
    def canal_centre_xyz(self) -> np.ndarray:
        """The centre of this level's own canal: the canal point before it moved to the study's midline."""
        if not self.canal_midline_shift_mm:
            return self.canal_xyz
        return self.canal_xyz - self.canal_midline_shift_mm * disc_frame(self.normal)[2]

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "disc_xyz_lps_mm": _rounded(self.xyz_lps_mm),
            "normal_lps": _rounded(self.normal_lps, 4),
            "canal_xyz_lps_mm": _rounded(self.canal_xyz_lps_mm),
            "canal_source": self.canal_source,
            "upper_vertebra": UPPER_VERTEBRA[self.level],
            "upper_vertebra_xyz_lps_mm": _rounded(self.upper_vertebra_xyz_lps_mm),
            "lower_vertebra": LOWER_VERTEBRA[self.level],
            "lower_vertebra_xyz_lps_mm": _rounded(self.lower_vertebra_xyz_lps_mm),
            "disc_voxels": self.disc_voxels,
            "disc_volume_mm3": round(self.disc_volume_mm3, 1),
            "confidence": round(self.confidence, 3),
            "reasons": list(self.reasons),
            "mask_level": self.mask_level,
            "foramen_offset_mm": None if self.foramen_offset_mm is None else round(self.foramen_offset_mm, 2),
            "foramen_offset_source": self.foramen_offset_source,
            "canal_midline_shift_mm": round(self.canal_midline_shift_mm, 2),
        }


@dataclass(frozen=True)
class MissingLevel:
    level: str
    reason: str

    def to_dict(self) -> dict:
        return {"level": self.level, "reason": self.reason}


@dataclass(frozen=True)
class LandmarkSet:
    """The levels found, the levels missing (with why), warnings, and whether the level names are unsure.

    ``unsure`` means the level *names* may be off by one or more (no sacrum anchor, or inconsistent
    evidence); positions of what was found are still measured.
    """

    levels: tuple[LevelLandmark, ...]
    missing: tuple[MissingLevel, ...]
    warnings: tuple[str, ...]
    unsure: bool
    anchor: str  # "sacrum", "labels", "keypoints" or "none"
    axis_superior_lps: tuple[float, float, float] | None = None
    disc_spacing_mm: float | None = None
    source: str = "mask"  # "mask", "vertebrae" (discs placed between the bodies), "keypoints", …

    @property
    def found_levels(self) -> tuple[str, ...]:
        return tuple(lm.level for lm in self.levels)

    @property
    def missing_levels(self) -> tuple[str, ...]:
        return tuple(m.level for m in self.missing)

    def get(self, level: str) -> LevelLandmark | None:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; valid: {list(LEVELS)}")
        return next((lm for lm in self.levels if lm.level == level), None)

    def __getitem__(self, level: str) -> LevelLandmark:
        lm = self.get(level)
        if lm is None:
            raise KeyError(f"level {level!r} not found; found: {list(self.found_levels)}")
        return lm

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "anchor": self.anchor,
            "unsure": self.unsure,
            "levels": [lm.to_dict() for lm in self.levels],
            "missing": [m.to_dict() for m in self.missing],
            "warnings": list(self.warnings),
            "axis_superior_lps": _rounded(self.axis_superior_lps, 4),
            "disc_spacing_mm": None if self.disc_spacing_mm is None else round(self.disc_spacing_mm, 2),
        }
