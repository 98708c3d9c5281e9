"""Grades read off the measurements by stated rules, with no trained model: spinal canal stenosis (Normal/Mild,
Moderate, Severe), disc narrowing (absent, present) and listhesis (Meyerding). Each rule is a row of
:data:`RULES` (its measurement, thresholds, softness and the published scheme it follows), so that the docs,
the JSON and the code say the same thing.

Probabilities are soft: a measurement one softness-width past a threshold gives 73 % to the side it lies on,
so a value on a threshold is an honest 50/50, not a coin flip dressed as certainty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from spine_seg.core.constants import SEVERITIES
from spine_seg.measurements.types import MeasuredGrade, SiteMeasurements, SpineMeasurements

SPINAL = "spinal_canal_stenosis"
NARROWING = "disc_narrowing"
LISTHESIS = "listhesis"


@dataclass(frozen=True)
class Rule:
    """``measurement`` below ``thresholds[0]`` is the second class, below ``thresholds[1]`` the third (or the
    reverse where ``rising``); ``width``: the logistic's scale, in the measurement's unit."""

    finding: str
    measurement: str
    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    width: float
    rising: bool
    source: str


RULES: dict[str, Rule] = {
    # Lee et al., AJR 2011;196:1095: grades by the CSF left around the cauda equina (0 none, 1 mild: anterior
    # CSF partly obliterated, 2 moderate: some roots aggregated, 3 severe: no CSF, one bundle). Read on the
    # mid-sagittal T2 as the CSF-filled fraction of the canal's AP diameter at the disc.
    "csf_fraction": Rule(
        SPINAL,
        "csf_fraction",
        tuple(SEVERITIES),
        (0.40, 0.15),
        0.06,
        False,
        "Lee et al. 2011 (AJR 196:1095), CSF effacement, as the CSF-filled fraction of the canal's AP diameter",
    ),
    # Fardon et al., Spine J 2014;14:2525 (Lumbar Disc Nomenclature 2.0): canal compromise under a third of
    # the normal canal is mild, one to two thirds moderate, over two thirds severe. The normal canal: the
    # mid-vertebral diameters above and below. Used where the image gives no CSF (not T2-weighted).
    "canal_ap_ratio": Rule(
        SPINAL,
        "canal_ap_ratio",
        tuple(SEVERITIES),
        (2 / 3, 1 / 3),
        0.06,
        False,
        "Fardon et al. 2014 (Spine J 14:2525), canal compromise in thirds of the mid-vertebral canal",
    ),
    # Disc-height index: the disc's mean height over the adjacent bodies' middle height; threshold from
    # docs/measurements.md (the healthy volunteers' lower range).
    "disc_height_index": Rule(
        NARROWING,
        "disc_height_index",
        ("absent", "present"),
        (0.25,),
        0.03,
        False,
        "disc-height index (disc height / adjacent vertebral body height) under 0.25",
    ),
    # Meyerding 1932: slip in quarters of the lower endplate; under 3 mm is not called a listhesis (the
    # usual radiographic cut for degenerative spondylolisthesis).
    "listhesis_percent": Rule(
        LISTHESIS,
        "listhesis_percent",
        ("none", "grade_1", "grade_2", "grade_3_or_more"),
        (3.0, 25.0, 50.0),
        2.0,
        True,
        "Meyerding 1932 (slip in quarters of the lower endplate), a slip of 3 mm or more",
    ),
}


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def ordinal_probabilities(value: float, thresholds: tuple[float, ...], width: float, rising: bool) -> tuple[float, ...]:
    """Soft class probabilities of an ordinal reading: P(class ≥ c) is a logistic around each threshold."""
    at_least = [1.0]
    for t in thresholds:
        at_least.append(_sigmoid((value - t) / width) if rising else _sigmoid((t - value) / width))
    at_least.append(0.0)
    for i in range(1, len(at_least) - 1):  # monotone even where thresholds are close
        at_least[i] = min(at_least[i], at_least[i - 1])
    return tuple(max(at_least[i] - at_least[i + 1], 0.0) for i in range(len(at_least) - 1))


def _grade(rule_name: str, site: SiteMeasurements, value: float | None, reason: str | None) -> MeasuredGrade:
    rule = RULES[rule_name]
    basis: Mapping[str, float | None] = {rule.measurement: value}
    if value is None:
        return MeasuredGrade(rule.finding, site.site, rule.classes, None, basis, rule.source, False, reason)
    probs = ordinal_probabilities(value, rule.thresholds, rule.width, rule.rising)
    return MeasuredGrade(rule.finding, site.site, rule.classes, probs, basis, rule.source)


def _reason(site: SiteMeasurements, name: str) -> str:
    m = site.values.get(name)
    return f"{name}: {m.reason}" if m is not None and m.reason else f"{name} not measured"


def canal_grade(site: SiteMeasurements) -> MeasuredGrade:
    """Stenosis by both readings, the worse one counting: the CSF left inside the canal (Lee's grades, where
    the series shows CSF bright) and the canal's compromise against the mid-vertebral canal above and below
    (Fardon's thirds). Either alone misses a kind of narrowing: a canal label drawn round a compressed sac
    keeps its CSF fraction, a canal label that keeps its width hides the CSF squeezed out of it."""
    frac, ratio = site.value("csf_fraction"), site.value("canal_ap_ratio")
    readings = [
        g
        for g in (
            _grade("csf_fraction", site, frac, None) if frac is not None else None,
            _grade("canal_ap_ratio", site, ratio, None) if ratio is not None else None,
        )
        if g
    ]
    if not readings:
        why = _reason(site, "csf_fraction") if "csf_fraction" in site.values else _reason(site, "canal_ap_ratio")
        return _grade("canal_ap_ratio", site, None, why)
    if len(readings) == 1:
        return readings[0]
    a, b = (np.asarray(g.probabilities, float) for g in readings)
    at_least = np.maximum(np.cumsum(a[::-1])[::-1], np.cumsum(b[::-1])[::-1])  # P(class ≥ c), the worse
    probs = tuple(float(v) for v in np.append(at_least[:-1] - at_least[1:], at_least[-1]))
    rule = " and ".join(RULES[n].source for n in ("csf_fraction", "canal_ap_ratio")) + "; the worse counts"
    return MeasuredGrade(
        SPINAL, site.site, tuple(SEVERITIES), probs, {"csf_fraction": frac, "canal_ap_ratio": ratio}, rule
    )


def narrowing_grade(site: SiteMeasurements) -> MeasuredGrade:
    dhi = site.value("disc_height_index")
    return _grade("disc_height_index", site, dhi, None if dhi is not None else _reason(site, "disc_height_index"))


def listhesis_grade(site: SiteMeasurements) -> MeasuredGrade:
    """Meyerding's grade from the slip in %, with "none" for a slip under 3 mm (in mm, not %)."""
    pct, mm = site.value("listhesis_percent"), site.value("listhesis_mm")
    if pct is None or mm is None:
        return _grade("listhesis_percent", site, None, _reason(site, "listhesis_percent"))
    rule = RULES["listhesis_percent"]
    present = _sigmoid((abs(mm) - rule.thresholds[0]) / (rule.width / 2))
    grades = ordinal_probabilities(abs(pct), rule.thresholds[1:], rule.width, True)
    probs = (1.0 - present, *(present * g for g in grades))
    return MeasuredGrade(
        rule.finding, site.site, rule.classes, probs, {"listhesis_percent": pct, "listhesis_mm": mm}, rule.source
    )


def measured_grades(measurements: SpineMeasurements) -> tuple[MeasuredGrade, ...]:
    """Every rule at every measured level, in level order (canal, narrowing, listhesis)."""
    out: list[MeasuredGrade] = []
    for site in measurements.levels:
        out += [canal_grade(site), narrowing_grade(site), listhesis_grade(site)]
    return tuple(out)
