"""Project level landmarks (LPS mm) into the other series of a study: the slice and pixel per level.

* **Sagittal T1** – the neural foramina: for each level a left and a right point, the canal point moved
  ``foramen_offset_mm`` along the patient's left–right axis (made orthogonal to the disc normal, so the
  offset stays in the disc plane). The T1 series' own slice positions decide which slice each side falls on:
  left is +x in LPS, so left foramina land on slices at larger x whatever order the instances run in.
* **Axial T2** – per level the stack and slice nearest the disc plane where it crosses the canal (the canal
  point lies on the disc plane; over all stacks, as :meth:`Series.locate` picks it) and the canal's pixel
  there. A level whose nearest slice lies farther than half that stack's slice spacing plus a tolerance is
  flagged: the axial series does not reach it. The disc centre's own distance is reported too.
* **Sagittal T2** – the canal point's slice and pixel (the spinal canal's crop).

A study that lacks a series kind gets every projection it can and a ``missing`` entry for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spine_seg.core.constants import LEVELS, SIDES, SeriesKind
from spine_seg.core.errors import UsageError
from spine_seg.dicom import Series, SliceHit, Study
from spine_seg.landmarks import DEFAULT_FORAMEN_OFFSET_MM, LandmarkSet, LevelLandmark, disc_frame

#: Extra distance (mm) beyond half a slice spacing that still counts as "on this slice". Covers the
#: landmark's own error (≈ 1–3 mm) without letting a slice one full spacing away pass.
DEFAULT_TOLERANCE_MM = 2.0
TARGETS: tuple[str, ...] = ("left_foramen", "right_foramen", "canal")
#: The foramen's centre lies above the disc and in front of the canal's centre: the exiting root passes
#: under the upper pedicle, behind the upper vertebra's lower corner. Study 100206310's annotated foramina
#: sit 3–10 mm (mean 5.6) above and 2–14 mm in front of its spinal keypoints; the phantom's ~7 mm above
#: and ~4.5 mm in front of the canal centre. The in-plane point therefore moves by these, not just sideways.
FORAMEN_SUPERIOR_MM = 5.0
FORAMEN_ANTERIOR_MM = 4.0


@dataclass(frozen=True)
class ProjectedPoint:
    """One landmark of one level in one series: the slice it falls on, the pixel, and whether it is really there.

    ``hit`` is the in-plane point (``x``, ``y``) on the nearest slice and its distance from that slice's
    plane (``plane_distance_mm``, what ``reached`` is judged on).
    """

    level: str
    target: str  # one of TARGETS
    kind: SeriesKind
    xyz_lps_mm: tuple[float, float, float]
    hit: SliceHit
    plane_distance_mm: float
    slice_spacing_mm: float
    tolerance_mm: float
    lateral_offset_mm: float | None = None
    lateral_offset_source: str | None = None
    disc_distance_mm: float | None = None  # Axial T2: the disc centre's distance from the chosen slice

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise UsageError(f"unknown level {self.level!r}; valid: {list(LEVELS)}")
        if self.target not in TARGETS:
            raise UsageError(f"unknown target {self.target!r}; valid: {list(TARGETS)}")

    @property
    def limit_mm(self) -> float:
        return 0.5 * self.slice_spacing_mm + self.tolerance_mm

    @property
    def reached(self) -> bool:
        """The series holds this point: within half a slice (plus tolerance) of the slice, inside its field of view."""
        return self.hit.inside_fov and abs(self.plane_distance_mm) <= self.limit_mm

    @property
    def instance_number(self) -> int:
        return self.hit.instance_number

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "target": self.target,
            "kind": self.kind.value,
            "xyz_lps_mm": [round(v, 3) for v in self.xyz_lps_mm],
            **self.hit.to_dict(),
            "plane_distance_mm": round(self.plane_distance_mm, 3),
            "limit_mm": round(self.limit_mm, 3),
            "reached": self.reached,
            **({"disc_distance_mm": round(self.disc_distance_mm, 3)} if self.disc_distance_mm is not None else {}),
            **(
                {
                    "lateral_offset_mm": round(self.lateral_offset_mm, 2),
                    "lateral_offset_source": self.lateral_offset_source,
                }
                if self.lateral_offset_mm is not None
                else {}
            ),
        }


@dataclass(frozen=True)
class StudyProjection:
    """Every projection of a study's landmarks, what could not be had, and why."""

    study_id: str
    foramina: tuple[ProjectedPoint, ...]  # Sagittal T1, left and right per level
    axial: tuple[ProjectedPoint, ...]  # Axial T2, one per level (reached or not)
    canal: tuple[ProjectedPoint, ...]  # Sagittal T2, one per level
    missing: tuple[str, ...]
    warnings: tuple[str, ...]
    series_ids: dict[str, tuple[str, ...]]  # kind → the series used

    def foramen(self, level: str, side: str) -> ProjectedPoint | None:
        if side not in SIDES:
            raise UsageError(f"unknown side {side!r}; valid: {list(SIDES)}")
        return _pick(self.foramina, level, f"{side}_foramen")

    def axial_at(self, level: str) -> ProjectedPoint | None:
        return _pick(self.axial, level, "canal")

    def canal_at(self, level: str) -> ProjectedPoint | None:
        return _pick(self.canal, level, "canal")

    @property
    def axial_levels_reached(self) -> tuple[str, ...]:
        return tuple(p.level for p in self.axial if p.reached)

    def to_dict(self) -> dict:
        return {
            "study_id": self.study_id,
            "series": {k: list(v) for k, v in self.series_ids.items()},
            "sagittal_t1_foramina": [p.to_dict() for p in self.foramina],
            "axial_t2": [p.to_dict() for p in self.axial],
            "sagittal_t2_canal": [p.to_dict() for p in self.canal],
            "missing": list(self.missing),
            "warnings": list(self.warnings),
        }


def _pick(points: Sequence[ProjectedPoint], level: str, target: str) -> ProjectedPoint | None:
    if level not in LEVELS:
        raise UsageError(f"unknown level {level!r}; valid: {list(LEVELS)}")
    return next((p for p in points if p.level == level and p.target == target), None)


# ---------------------------------------------------------------------------------------------------------


def _best_hit(series: Sequence[Series], xyz_lps_mm: np.ndarray) -> tuple[Series, SliceHit]:
    """Nearest slice over several series of one kind, preferring slices whose field of view holds the point."""
    hits = [(s, s.locate(xyz_lps_mm)) for s in series]
    return min(hits, key=lambda sh: (not sh[1].inside_fov, abs(sh[1].distance_mm)))


def _spacing(series: Series, hit: SliceHit) -> float:
    stack = next(st for st in series.stacks if st.index == hit.stack_index)
    return stack.slice_spacing_mm


def _hit_on_slice(series: Series, chosen: SliceHit, xyz_lps_mm: np.ndarray) -> SliceHit:
    """Another point projected onto an already chosen slice (same stack and k)."""
    stack = next(st for st in series.stacks if st.index == chosen.stack_index)
    sl = stack.slices[chosen.k]
    x, y, d = sl.world_to_pixel(xyz_lps_mm)
    inside = -0.5 <= x <= sl.columns - 0.5 and -0.5 <= y <= sl.rows - 0.5
    return SliceHit(series.series_id, stack.index, chosen.k, sl.instance_number, x, y, d, inside)


def _tuple3(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def foramen_points(
    landmark: LevelLandmark,
    default_offset_mm: float = DEFAULT_FORAMEN_OFFSET_MM,
    superior_mm: float = FORAMEN_SUPERIOR_MM,
    anterior_mm: float = FORAMEN_ANTERIOR_MM,
) -> dict[str, np.ndarray]:
    """Left and right foramen points of a level: the level's own canal centre ± the lateral offset along the patient's
    L–R axis in the disc plane (+x in LPS is the patient's left), moved ``superior_mm`` along the disc
    normal and ``anterior_mm`` forwards (see FORAMEN_SUPERIOR_MM)."""
    offset = landmark.foramen_offset_mm if landmark.foramen_offset_mm is not None else default_offset_mm
    n, post, left = disc_frame(landmark.normal)
    centre = landmark.canal_centre_xyz + superior_mm * n - anterior_mm * post
    return {"left": centre + offset * left, "right": centre - offset * left}


def project_landmarks(
    landmarks: LandmarkSet,
    study: Study,
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    default_foramen_offset_mm: float = DEFAULT_FORAMEN_OFFSET_MM,
) -> StudyProjection:
    """Project every found level into the study's Sagittal T1, Axial T2 and Sagittal T2 series.

    Several series of one kind are searched together, per point (a second axial series often covers the
    levels the first one misses). Series of unknown kind are not used, and said so.
    """
    if tolerance_mm < 0:
        raise UsageError(f"tolerance_mm must be ≥ 0, got {tolerance_mm}")
    missing: list[str] = [f"{m.level}: no landmark ({m.reason})" for m in landmarks.missing]
    warnings: list[str] = []
    if landmarks.unsure:
        warnings.append("level names of the landmarks are unsure (see the landmark warnings)")
    unknown = [s.series_id for s in study.series_of_kind(SeriesKind.UNKNOWN)]
    if unknown:
        warnings.append(f"series of unknown kind not used: {unknown}")
    t1 = study.series_of_kind(SeriesKind.SAGITTAL_T1)
    ax = study.series_of_kind(SeriesKind.AXIAL_T2)
    t2 = study.series_of_kind(SeriesKind.SAGITTAL_T2)
    for kind, series, what in (
        (SeriesKind.SAGITTAL_T1, t1, "foramina not projected"),
        (SeriesKind.AXIAL_T2, ax, "no axial slice per level"),
        (SeriesKind.SAGITTAL_T2, t2, "canal not projected onto the sagittal T2"),
    ):
        if not series:
            missing.append(f"{kind.value}: no such series in study {study.study_id}: {what}")

    foramina = [p for lm in landmarks.levels for p in _foramina(lm, t1, tolerance_mm, default_foramen_offset_mm)]
    axial = [_axial(lm, ax, tolerance_mm) for lm in landmarks.levels] if ax else []
    canal = [_sagittal_canal(lm, t2, tolerance_mm) for lm in landmarks.levels] if t2 else []
    why = {
        SeriesKind.SAGITTAL_T1: "the sagittal T1 does not cover this foramen",
        SeriesKind.AXIAL_T2: "the axial series does not reach this level",
        SeriesKind.SAGITTAL_T2: "the sagittal T2 does not hold the canal point",
    }
    missing += [_not_reached(p, why[p.kind]) for p in (*foramina, *axial, *canal) if not p.reached]
    for level in LEVELS:
        left, right = _pick(foramina, level, "left_foramen"), _pick(foramina, level, "right_foramen")
        if left is not None and right is not None and left.hit.instance_number == right.hit.instance_number:
            warnings.append(f"{level}: left and right foramina fall on the same sagittal T1 slice")
    return StudyProjection(
        study_id=study.study_id,
        foramina=tuple(foramina),
        axial=tuple(axial),
        canal=tuple(canal),
        missing=tuple(missing),
        warnings=tuple(warnings),
        series_ids={
            k.value: tuple(s.series_id for s in ss)
            for k, ss in ((SeriesKind.SAGITTAL_T1, t1), (SeriesKind.AXIAL_T2, ax), (SeriesKind.SAGITTAL_T2, t2))
        },
    )


def _foramina(
    lm: LevelLandmark, t1: Sequence[Series], tolerance_mm: float, default_offset_mm: float
) -> list[ProjectedPoint]:
    """Left and right foramen of one level on the Sagittal T1 (none without a T1)."""
    if not t1:
        return []
    offset = lm.foramen_offset_mm if lm.foramen_offset_mm is not None else default_offset_mm
    source = lm.foramen_offset_source if lm.foramen_offset_mm is not None else "default"
    out = []
    for side, xyz in foramen_points(lm, default_offset_mm).items():
        series, hit = _best_hit(t1, xyz)
        out.append(
            ProjectedPoint(
                lm.level,
                f"{side}_foramen",
                SeriesKind.SAGITTAL_T1,
                _tuple3(xyz),
                hit,
                hit.distance_mm,
                _spacing(series, hit),
                tolerance_mm,
                offset,
                source,
            )
        )
    return out


def _axial(lm: LevelLandmark, ax: Sequence[Series], tolerance_mm: float) -> ProjectedPoint:
    """The axial slice through the canal at the disc level (the canal point lies on the disc plane).

    That is where subarticular stenosis is read. In one long axial stack angled for the middle of the
    spine, the plane through the disc centre can lie 1–2 slices away from it at the canal.
    """
    series, hit = _best_hit(ax, lm.canal_xyz)
    disc_on_slice = _hit_on_slice(series, hit, lm.disc_xyz)
    return ProjectedPoint(
        lm.level,
        "canal",
        SeriesKind.AXIAL_T2,
        lm.canal_xyz_lps_mm,
        hit,
        hit.distance_mm,
        _spacing(series, hit),
        tolerance_mm,
        disc_distance_mm=disc_on_slice.distance_mm,
    )


def _sagittal_canal(lm: LevelLandmark, t2: Sequence[Series], tolerance_mm: float) -> ProjectedPoint:
    series, hit = _best_hit(t2, lm.canal_xyz)
    return ProjectedPoint(
        lm.level,
        "canal",
        SeriesKind.SAGITTAL_T2,
        lm.canal_xyz_lps_mm,
        hit,
        hit.distance_mm,
        _spacing(series, hit),
        tolerance_mm,
    )


def _not_reached(p: ProjectedPoint, why: str) -> str:
    where = (
        "outside its field of view"
        if not p.hit.inside_fov
        else f"{abs(p.plane_distance_mm):.1f} mm from the nearest slice"
    )
    return f"{p.kind.value} {p.level} {p.target}: {where} (limit {p.limit_mm:.1f} mm): {why}"
