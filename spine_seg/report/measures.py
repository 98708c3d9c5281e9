"""The report's measurement panels: the canal's antero-posterior diameter along the spine (levels marked, the
narrowest point of each level highlighted), the measurement table, and the measured grades in the grade
table's place when the study was predicted without a grading bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from spine_seg.core.constants import LEVELS, SEVERITIES, SEVERITY_LABELS
from spine_seg.measurements.grades import LISTHESIS, NARROWING, SPINAL
from spine_seg.measurements.types import MeasuredGrade, SpineMeasurements

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

from spine_seg.report.canvas import _cell_colour, _Context, _text_colour, _text_panel
from spine_seg.report.style import DIM, PANEL_BG, SEVERITY_COLOURS, TEXT, level_name
from spine_seg.report.summary import level_headings

#: Half the stretch (mm along the canal) around a disc level where its narrowest point is looked for.
LEVEL_WINDOW_MM = 8.0
#: The measured findings' rows in the grade table, with their short names and the class shown as normal.
MEASURED_ROWS: tuple[tuple[str, str], ...] = (
    (SPINAL, "Canal (measured)"),
    (NARROWING, "Disc narrowing"),
    (LISTHESIS, "Listhesis"),
)
#: Colour of each measured class (the competition's three and the yes/no and Meyerding findings).
_CLASS_SEVERITY: dict[str, str] = {
    **{s: s for s in SEVERITIES},
    "absent": "normal_mild",
    "present": "moderate",
    "none": "normal_mild",
    "grade_1": "moderate",
    "grade_2": "severe",
    "grade_3_or_more": "severe",
}
_CLASS_LABEL: dict[str, str] = {
    **SEVERITY_LABELS,
    "absent": "No",
    "present": "Yes",
    "none": "None",
    "grade_1": "Grade I",
    "grade_2": "Grade II",
    "grade_3_or_more": "Grade ≥III",
}


def profile_curve(ms: SpineMeasurements) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(s_mm, diameter_mm with NaN gaps, which diameter): the CSF's where the series shows it, else the
    canal label's; None without a profile."""
    p = ms.profile
    if p is None or not p.s_mm:
        return None
    use_csf = p.csf_ap_mm is not None and any(v is not None for v in p.csf_ap_mm)
    values = p.csf_ap_mm if use_csf and p.csf_ap_mm is not None else p.ap_mm
    d = np.array([np.nan if v is None else v for v in values], float)
    return np.asarray(p.s_mm, float), d, "CSF" if use_csf else "canal label"


def narrowest_points(ms: SpineMeasurements) -> dict[str, tuple[float, float]]:
    """Each level's narrowest point on the profile within ±LEVEL_WINDOW_MM: level → (s_mm, diameter_mm)."""
    curve = profile_curve(ms)
    if curve is None or ms.profile is None:
        return {}
    s, d, _ = curve
    out = {}
    for level, at in ms.profile.level_s_mm.items():
        near = (np.abs(s - at) <= LEVEL_WINDOW_MM) & np.isfinite(d)
        if near.any():
            i = int(np.flatnonzero(near)[np.argmin(d[near])])
            out[level] = (float(s[i]), float(d[i]))
    return out


def narrowest_level(ms: SpineMeasurements | None) -> str | None:
    """The disc level whose canal is narrowest on the profile (what the report's curve highlights)."""
    points = narrowest_points(ms) if ms is not None else {}
    return min(points, key=lambda lv: points[lv][1]) if points else None


def _frame(ax: Axes) -> None:
    ax.set_facecolor(PANEL_BG)
    for spine in ax.spines.values():
        spine.set_color("#555")
    ax.tick_params(colors=DIM, labelsize=7.5)


def draw_profile(ax: Axes, ctx: _Context) -> None:
    """The canal's AP diameter along the spine, superior on the left; the narrowest point of each level
    circled, the narrowest of all in red with its value."""
    ms = ctx.result.measurements
    curve = profile_curve(ms) if ms is not None else None
    _frame(ax)
    if curve is None or ms is None or ms.profile is None:
        ax.text(
            0.5, 0.5, "no canal profile: no levels found", color=DIM, ha="center", va="center", transform=ax.transAxes
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    s, d, what = curve
    ax.plot(s, d, color="#4fc3f7", lw=1.6)
    label = np.array([np.nan if v is None else v for v in ms.profile.ap_mm], float)
    if what == "CSF":
        ax.plot(s, label, color=DIM, lw=0.9, ls="--")
    top = np.nanmax(np.concatenate([d, label])) if np.isfinite(np.concatenate([d, label])).any() else 20.0
    ax.set_ylim(0, max(top * 1.25, 5.0))
    ax.set_xlim(float(s.min()), float(s.max()))
    for level, at in ms.profile.level_s_mm.items():
        ax.axvline(at, color="#666", lw=0.8, ls=":")
        ax.text(at, ax.get_ylim()[1] * 0.97, level_name(level), color=TEXT, fontsize=8, ha="center", va="top")
    points = narrowest_points(ms)
    worst = min(points, key=lambda lv: points[lv][1]) if points else None
    for level, (x, y) in points.items():
        colour = "#e0301e" if level == worst else "#f0a202"
        ax.plot([x], [y], "o", ms=7 if level == worst else 5, mfc="none", mec=colour, mew=1.6)
    if worst is not None:
        x, y = points[worst]
        ax.annotate(
            f"narrowest: {level_name(worst)} {y:.1f} mm",
            (x, y),
            xytext=(0, 14),
            textcoords="offset points",
            color="#ff6e6e",
            fontsize=8.5,
            ha="center",
            fontweight="bold",
        )
    ax.set_xlabel("mm along the canal (superior → inferior)", color=DIM, fontsize=8)
    ax.set_ylabel("AP diameter (mm)", color=DIM, fontsize=8)
    key = "solid: CSF (T2 bright) · dashed: canal label" if what == "CSF" else "canal label (no CSF contrast)"
    ax.set_title(f"Spinal canal AP diameter along the spine — {key}", color=TEXT, fontsize=9.5, loc="left")


#: Columns of the measurement table: (heading, measurement key, format).
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("canal AP", "canal_ap_mm", "{:.1f}"),
    ("CSF AP", "csf_ap_mm", "{:.1f}"),
    ("CSF frac", "csf_fraction", "{:.2f}"),
    ("CSA mm²", "canal_csa_mm2", "{:.0f}"),
    ("disc A/M/P", "", ""),
    ("DHI", "disc_height_index", "{:.2f}"),
    ("signal", "disc_csf_signal_ratio", "{:.2f}"),
    ("slip mm (%)", "", ""),
)


#: Short forms of the measured grades in the measurement table's last column.
_SHORT: dict[str, str] = {
    "normal_mild": "N/M",
    "moderate": "Mod",
    "severe": "Sev",
    "absent": "no",
    "present": "yes",
    "none": "0",
    "grade_1": "I",
    "grade_2": "II",
    "grade_3_or_more": "III+",
}


def measurement_rows(ms: SpineMeasurements | None, grades: Sequence[MeasuredGrade] = ()) -> list[list[str]]:
    """The measurement table as text, one row per level (— for a measurement flagged invalid), the last column
    the measured grades (canal · narrowing · Meyerding), beside a bundle's model grades, never instead of them."""
    by = {(g.finding, g.site): g.grade for g in grades}
    rows = []
    for level in LEVELS:
        site = ms.level(level) if ms is not None else None
        row = [level_name(level)]
        for heading, key, fmt in TABLE_COLUMNS:
            if site is None:
                row.append("—")
            elif heading.startswith("disc"):
                hs = [site.value(f"disc_height_{w}_mm") for w in ("anterior", "middle", "posterior")]
                row.append("/".join("—" if h is None else f"{h:.1f}" for h in hs))
            elif heading.startswith("slip"):
                mm, pct = site.value("listhesis_mm"), site.value("listhesis_percent")
                row.append("—" if mm is None or pct is None else f"{mm:+.1f} ({pct:+.0f}%)")
            else:
                v = site.value(key)
                row.append("—" if v is None else fmt.format(v))
        marks = [by.get((f, level)) for f, _ in MEASURED_ROWS]
        row.append(" · ".join("—" if m is None else _SHORT.get(m, m) for m in marks))
        rows.append(row)
    return rows


def draw_measurement_table(ax: Axes, ctx: _Context) -> None:
    ms = ctx.result.measurements
    _text_panel(ax)
    headings = ["level", *(h for h, _, _ in TABLE_COLUMNS), "measured"]
    widths = [0.075, 0.08, 0.075, 0.08, 0.08, 0.15, 0.06, 0.07, 0.155, 0.17]
    xs = np.concatenate([[0.0], np.cumsum(widths)[:-1]])
    ax.text(
        0.0,
        0.98,
        "Measurements (mm on the mid-sagittal plane; — = not measurable, reason in result.json)",
        color=TEXT,
        fontsize=9.5,
        va="top",
    )
    y = 0.8
    for x, h in zip(xs, headings, strict=True):
        ax.text(x, y, h, color=DIM, fontsize=8, va="center", fontweight="bold")
    for row in measurement_rows(ms, ctx.result.measured_grades):
        y -= 0.12
        for x, cell in zip(xs, row, strict=True):
            ax.text(x, y, cell, color=TEXT, fontsize=8, va="center", family="monospace")
    lordosis = ms.spine.get("lordosis_l1_s1_deg") if ms is not None else None
    text = "lordosis L1–S1: " + (
        f"{lordosis.value:.0f}°"
        if lordosis is not None and lordosis.valid and lordosis.value is not None
        else f"— ({lordosis.reason})"
        if lordosis is not None
        else "—"
    )
    text += "   ·   measured: canal stenosis · disc narrowing · Meyerding (docs/measurements.md)"
    ax.text(0.0, 0.02, text, color=DIM, fontsize=8, va="bottom")


def draw_measured_grades(ax: Axes, ctx: _Context) -> None:
    """The measured grades (canal, disc narrowing, listhesis) × levels in the grade table's place."""
    from matplotlib.patches import Rectangle

    res = ctx.result
    _text_panel(ax)
    label_w, head_h = 0.185, 0.1
    cell_w = (1 - label_w) / len(LEVELS)
    cell_h = (1 - head_h - 0.16) / len(MEASURED_ROWS)
    ax.text(
        0.0,
        0.05,
        "Measured grades (no grading bundle: the 25 competition rows were not produced)",
        color="#ffb347",
        fontsize=8.5,
        va="center",
    )
    level_headings(ax, label_w, cell_w, head_h)
    for r, (finding, short) in enumerate(MEASURED_ROWS):
        y0 = 1 - head_h - (r + 1) * cell_h
        ax.text(label_w - 0.01, y0 + cell_h / 2, short, color=TEXT, fontsize=10, ha="right", va="center")
        for n, level in enumerate(LEVELS):
            x0 = label_w + n * cell_w
            g = res.measured_grade(finding, level)
            text, sub, colour = _cell(g)
            ax.add_patch(
                Rectangle((x0 + 0.003, y0 + 0.004), cell_w - 0.006, cell_h - 0.008, facecolor=colour, edgecolor="#555")
            )
            ink = _text_colour(colour)
            ax.text(
                x0 + cell_w / 2,
                y0 + cell_h * 0.62,
                text,
                color=ink,
                fontsize=9,
                fontweight="bold",
                ha="center",
                va="center",
            )
            ax.text(x0 + cell_w / 2, y0 + cell_h * 0.32, sub, color=ink, fontsize=8.5, ha="center", va="center")


def _cell(g: MeasuredGrade | None) -> tuple[str, str, np.ndarray]:
    from matplotlib.colors import to_rgb

    grey = np.array(to_rgb("#2a2d31"))
    if g is None:
        return "not found", "", grey
    if not g.valid or g.probabilities is None or g.grade is None:
        return "not measurable", "", grey
    p = float(max(g.probabilities))
    severity = _CLASS_SEVERITY.get(g.grade, "normal_mild")
    colour = _cell_colour(severity, p) if severity in SEVERITY_COLOURS else grey
    return _CLASS_LABEL.get(g.grade, g.grade), f"{100 * p:.0f}%", colour


def measured_grade_texts(ctx: _Context) -> dict[tuple[str, str], str]:
    """(finding, level) → the text its cell shows: what the grade panel says, for tests and notebooks."""
    return {(f, lv): _cell(ctx.result.measured_grade(f, lv))[0] for f, _ in MEASURED_ROWS for lv in LEVELS}
