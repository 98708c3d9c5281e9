"""The competition's vocabulary, spelled exactly as RSNA 2024 spells it, in one place.

Everything else in spineseg imports these names instead of writing strings, so a typo is an
ImportError or a KeyError here, never a silently empty join three stages later.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from spine_seg.core.errors import UsageError

CONDITIONS: tuple[str, ...] = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
LEVELS: tuple[str, ...] = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
SIDES: tuple[str, ...] = ("left", "right")

#: Condition groups scored separately by the metric; each maps to its conditions.
CONDITION_GROUPS: dict[str, tuple[str, ...]] = {
    "spinal": ("spinal_canal_stenosis",),
    "foraminal": ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"),
    "subarticular": ("left_subarticular_stenosis", "right_subarticular_stenosis"),
}
GROUP_OF_CONDITION: dict[str, str] = {c: g for g, cs in CONDITION_GROUPS.items() for c in cs}
#: The side of a lateral condition, None for the canal.
SIDE_OF_CONDITION: dict[str, str | None] = {
    c: next((s for s in SIDES if c.startswith(s + "_")), None) for c in CONDITIONS
}

#: Submission columns, in the order of sample_submission.csv.
SEVERITIES: tuple[str, ...] = ("normal_mild", "moderate", "severe")
#: How train.csv writes each severity.
SEVERITY_LABELS: dict[str, str] = {
    "normal_mild": "Normal/Mild",
    "moderate": "Moderate",
    "severe": "Severe",
}
SEVERITY_FROM_LABEL: dict[str, str] = {v: k for k, v in SEVERITY_LABELS.items()}
#: Metric sample weights (the competition's 1/2/4).
SAMPLE_WEIGHTS: dict[str, float] = {"normal_mild": 1.0, "moderate": 2.0, "severe": 4.0}

SUBMISSION_COLUMNS: tuple[str, ...] = ("row_id", *SEVERITIES)
#: train.csv target columns, ``<condition>_<level>``, condition-major as the competition orders them.
TARGET_COLUMNS: tuple[str, ...] = tuple(f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS)


class SeriesKind(StrEnum):
    """The three series descriptions of the competition; the value is the CSV spelling."""

    SAGITTAL_T1 = "Sagittal T1"
    SAGITTAL_T2 = "Sagittal T2/STIR"
    AXIAL_T2 = "Axial T2"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str) -> SeriesKind:
        """Read a series description as the CSV writes it (case and spacing tolerant)."""
        key = " ".join(str(text).split()).lower()
        for kind in cls:
            if kind.value.lower() == key:
                return kind
        raise UsageError(
            f"unknown series description {text!r}; valid: {[k.value for k in cls if k is not cls.UNKNOWN]}"
        )


#: The series each condition is annotated on in the competition's keypoint file.
SERIES_KIND_OF_CONDITION: dict[str, SeriesKind] = {
    "spinal_canal_stenosis": SeriesKind.SAGITTAL_T2,
    "left_neural_foraminal_narrowing": SeriesKind.SAGITTAL_T1,
    "right_neural_foraminal_narrowing": SeriesKind.SAGITTAL_T1,
    "left_subarticular_stenosis": SeriesKind.AXIAL_T2,
    "right_subarticular_stenosis": SeriesKind.AXIAL_T2,
}


def _choice(value: str, valid: Iterable[str], what: str) -> str:
    valid = tuple(valid)
    if value not in valid:
        raise UsageError(f"unknown {what} {value!r}; valid: {list(valid)}")
    return value


def normalize_condition(text: str) -> str:
    """Accept both spellings of the keypoint file: ``Spinal Canal Stenosis`` and ``spinal_canal_stenosis``."""
    return _choice("_".join(str(text).strip().lower().replace("-", " ").split()), CONDITIONS, "condition")


def normalize_level(text: str) -> str:
    """Accept ``L4/L5`` (Kaggle's keypoint file) as well as ``l4_l5``."""
    key = str(text).strip().lower().replace("/", "_").replace("-", "_").replace(" ", "_")
    return _choice(key, LEVELS, "level")


def normalize_severity(text: str) -> str:
    """Accept ``Normal/Mild`` (train.csv) as well as ``normal_mild`` (submission columns)."""
    text = str(text).strip()
    if text in SEVERITY_FROM_LABEL:
        return SEVERITY_FROM_LABEL[text]
    return _choice(text.lower(), SEVERITIES, "severity")


def row_id(study_id: str | int, condition: str, level: str) -> str:
    """``<study>_<condition>_<level>``, the submission's row id."""
    return f"{study_id}_{_choice(condition, CONDITIONS, 'condition')}_{_choice(level, LEVELS, 'level')}"


def parse_row_id(text: str) -> tuple[str, str, str]:
    """Split a row id back into (study_id, condition, level); the study id may hold underscores."""
    for condition in CONDITIONS:
        for level in LEVELS:
            suffix = f"_{condition}_{level}"
            if text.endswith(suffix) and len(text) > len(suffix):
                return text[: -len(suffix)], condition, level
    raise UsageError(
        f"malformed row_id {text!r}: expected <study>_<condition>_<level> with condition in {list(CONDITIONS)} and "
        f"level in {list(LEVELS)}"
    )


#: Conditions in sample_submission.csv's row order (alphabetical, unlike train.csv's columns).
SUBMISSION_CONDITION_ORDER: tuple[str, ...] = tuple(sorted(CONDITIONS))


def row_ids(study_id: str | int) -> list[str]:
    """The 25 row ids of one study, in sample_submission.csv's order."""
    return [row_id(study_id, c, lv) for c in SUBMISSION_CONDITION_ORDER for lv in LEVELS]


def kaggle_condition(condition: str) -> str:
    """``spinal_canal_stenosis`` → ``Spinal Canal Stenosis``, as Kaggle's keypoint file writes it."""
    return " ".join(w.capitalize() for w in _choice(condition, CONDITIONS, "condition").split("_"))


def kaggle_level(level: str) -> str:
    """``l4_l5`` → ``L4/L5``, as Kaggle's keypoint file writes it."""
    return _choice(level, LEVELS, "level").upper().replace("_", "/")
