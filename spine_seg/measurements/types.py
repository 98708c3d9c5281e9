"""What the measurement stage returns: one number with its unit, where it was taken and whether it can be
trusted; the numbers of one disc level and of one vertebra; the whole spine's set with its canal profile.

Every value is in patient space (mm, mm², degrees) whatever the stack's grid, and carries a validity flag
with its reason: a label that stops at the edge of the image or a level outside the field of view gives an
invalid measurement, never a wrong number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: UCUM codes of the units used (the SR writes them as they stand).
UCUM: dict[str, str] = {
    "mm": "millimeter",
    "mm2": "square millimeter",
    "deg": "degree",
    "%": "percent",
    "1": "no units",
}


def _r(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(float(v), digits)


@dataclass(frozen=True)
class Measurement:
    """One measured quantity. ``points_lps_mm``: the points it was taken between (a diameter's two ends, a
    height's two ends), for drawing and checking; ``slice_k``: the segmented stack's slice it was taken on."""

    name: str
    value: float | None
    unit: str
    valid: bool = True
    reason: str | None = None
    points_lps_mm: tuple[tuple[float, float, float], ...] = ()
    slice_k: int | None = None

    def __post_init__(self) -> None:
        if self.unit not in UCUM:
            raise ValueError(f"unknown unit {self.unit!r} for {self.name}; valid: {list(UCUM)}")
        if self.valid and self.value is None:
            raise ValueError(f"{self.name}: a valid measurement needs a value")
        if not self.valid and not self.reason:
            raise ValueError(f"{self.name}: an invalid measurement needs its reason")

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _r(self.value, 3) if self.valid else None,
            "unit": self.unit,
            "valid": self.valid,
            "reason": self.reason,
            "points_lps_mm": [[round(float(c), 2) for c in p] for p in self.points_lps_mm],
            "slice_k": self.slice_k,
        }


def invalid(name: str, unit: str, reason: str) -> Measurement:
    return Measurement(name, None, unit, valid=False, reason=reason)


def _freeze(values: Mapping[str, Measurement]) -> Mapping[str, Measurement]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class SiteMeasurements:
    """The measurements of one disc level (``site`` a level such as ``l4_l5``) or one vertebra (``L4``,
    ``sacrum``), taken on the mid-sagittal plane through ``xyz_lps_mm``."""

    site: str
    xyz_lps_mm: tuple[float, float, float]
    values: Mapping[str, Measurement] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _freeze(self.values))

    def value(self, name: str) -> float | None:
        """The value of a valid measurement, else None."""
        m = self.values.get(name)
        return m.value if m is not None and m.valid else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "xyz_lps_mm": [round(float(c), 2) for c in self.xyz_lps_mm],
            **{k: m.to_dict() for k, m in self.values.items()},
        }


@dataclass(frozen=True)
class CanalProfile:
    """The canal's antero-posterior diameter along the spine: ``s_mm`` the distance along the canal from its
    upper end, ``ap_mm`` the label's diameter there (None where it cannot be measured), ``csf_ap_mm`` the
    bright CSF's (None for a series that is not T2-weighted); ``level_s_mm`` where each disc level lies."""

    s_mm: tuple[float, ...]
    ap_mm: tuple[float | None, ...]
    level_s_mm: Mapping[str, float]
    csf_ap_mm: tuple[float | None, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "s_mm": [round(v, 1) for v in self.s_mm],
            "ap_mm": [_r(v) for v in self.ap_mm],
            "csf_ap_mm": None if self.csf_ap_mm is None else [_r(v) for v in self.csf_ap_mm],
            "level_s_mm": {k: round(v, 1) for k, v in self.level_s_mm.items()},
        }


@dataclass(frozen=True)
class SpineMeasurements:
    """All measurements of one study's segmentation: per disc level, per vertebra, the whole lumbar spine
    (``spine``: lordosis), the canal profile, and what could not be measured at all (``warnings``)."""

    levels: tuple[SiteMeasurements, ...]
    vertebrae: tuple[SiteMeasurements, ...]
    spine: Mapping[str, Measurement]
    profile: CanalProfile | None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spine", _freeze(self.spine))

    def level(self, level: str) -> SiteMeasurements | None:
        return next((s for s in self.levels if s.site == level), None)

    def vertebra(self, name: str) -> SiteMeasurements | None:
        return next((s for s in self.vertebrae if s.site == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": {s.site: s.to_dict() for s in self.levels},
            "vertebrae": {s.site: s.to_dict() for s in self.vertebrae},
            "spine": {k: m.to_dict() for k, m in self.spine.items()},
            "canal_profile": self.profile.to_dict() if self.profile is not None else None,
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class MeasuredGrade:
    """A grade read off the measurements by a stated rule, as soft probabilities over ``classes``.
    ``basis``: the measurements it used; ``rule``: the published scheme (docs/measurements.md)."""

    finding: str
    site: str
    classes: tuple[str, ...]
    probabilities: tuple[float, ...] | None
    basis: Mapping[str, float | None]
    rule: str
    valid: bool = True
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.valid and (self.probabilities is None or len(self.probabilities) != len(self.classes)):
            raise ValueError(f"{self.finding} {self.site}: one probability per class {self.classes}")
        object.__setattr__(self, "basis", MappingProxyType(dict(self.basis)))

    @property
    def grade(self) -> str | None:
        if not self.valid or self.probabilities is None:
            return None
        return self.classes[max(range(len(self.classes)), key=lambda i: self.probabilities[i])]  # type: ignore[index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "grade": self.grade,
            "probabilities": (
                None
                if self.probabilities is None
                else dict(zip(self.classes, (round(p, 4) for p in self.probabilities), strict=True))
            ),
            "basis": {k: _r(v, 3) for k, v in self.basis.items()},
            "rule": self.rule,
            "valid": self.valid,
            "reason": self.reason,
        }
