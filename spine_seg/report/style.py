"""The report's look, in one place: size, colours, how conditions and levels are named, zoom margins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spine_seg.core.constants import LEVELS, kaggle_level
from spine_seg.report.result import SOURCE_FALLBACK, SOURCE_PRIOR

if TYPE_CHECKING:  # pragma: no cover
    pass


#: 16 × 10 inches at 100 dpi: 1600 × 1000 px, readable on a laptop screen and well under 1.5 MB.
FIGSIZE_IN = (16.0, 10.0)
#: Height (inches) of the measurement band under the main report.
MEASURE_BAND_IN = 3.4


DPI = 100


FIG_BG = "#101214"


PANEL_BG = "black"


TEXT = "#e8e8e8"


DIM = "#9aa0a6"


#: Severity colours: green normal/mild, amber moderate, red severe (the usual traffic light of reports).
SEVERITY_COLOURS: dict[str, str] = {"normal_mild": "#2ca25f", "moderate": "#f0a202", "severe": "#e0301e"}


#: Marks of table cells whose probabilities did not come from the main model (see the legend).
SOURCE_MARKS: dict[str, str] = {SOURCE_FALLBACK: "F", SOURCE_PRIOR: "P"}


CONDITION_SHORT: dict[str, str] = {
    "spinal_canal_stenosis": "Spinal canal",
    "left_neural_foraminal_narrowing": "L foramen",
    "right_neural_foraminal_narrowing": "R foramen",
    "left_subarticular_stenosis": "L subarticular",
    "right_subarticular_stenosis": "R subarticular",
}


#: A point counts as "on" a slice within half its spacing plus this (the projection's own default).
ON_SLICE_TOLERANCE_MM = 2.0


#: Half-width of the axial zoom around the canal: wide enough for both recesses and facets.
AXIAL_HALF_FOV_MM = 42.0


#: Margin around the lumbar landmarks in the sagittal panels: the vertebra above L1/L2 and the sacrum.
SAGITTAL_MARGIN_MM = 40.0


#: Segmentation colours by label name (vertebrae alternate so neighbours stay apart).
_SEG_COLOURS: dict[str, str] = {
    "L1": "#4c9be8",
    "L2": "#7fc4ff",
    "L3": "#4c9be8",
    "L4": "#7fc4ff",
    "L5": "#4c9be8",
    "sacrum": "#b48ef0",
    "spinal_canal": "#3ee0d0",
    **{f"disc_{lv}": "#ffd84d" for lv in LEVELS},
}


_HEADER_LINES = 3  # fallbacks and warnings shown each; the rest are counted


_LINE_CHARS = 118


_LANDMARK_CHARS = 80


_CANAL_SOURCE = {
    "canal_label": "canal label",
    "disc_posterior_margin": "disc margin",
    "vertebra_posterior_estimate": "behind bodies",
    "keypoint": "keypoint",
}


def level_name(level: str) -> str:
    """``l4_l5`` → ``L4/L5`` (how a report names a level)."""
    return kaggle_level(level)
