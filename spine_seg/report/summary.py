"""The report's text panels: the grades table (conditions × levels, coloured by severity, marked by source),
the legend with the landmark summary, and the header (study, bundle, anchor, fallbacks, warnings).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES, SEVERITY_LABELS, row_id
from spine_seg.report.result import SOURCE_FALLBACK, SOURCE_MODEL, SOURCE_PRIOR, StudyResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from spine_seg.report.canvas import _cell_colour, _clip_line, _Context, _text_colour, _text_panel
from spine_seg.report.style import (
    _CANAL_SOURCE,
    _HEADER_LINES,
    _LANDMARK_CHARS,
    _LINE_CHARS,
    CONDITION_SHORT,
    DIM,
    SEVERITY_COLOURS,
    SOURCE_MARKS,
    TEXT,
    level_name,
)


def level_headings(ax: Axes, label_w: float, cell_w: float, head_h: float) -> None:
    """The level names over a grade table's columns (the competition's and the measured grades' alike)."""
    for n, level in enumerate(LEVELS):
        ax.text(
            label_w + (n + 0.5) * cell_w,
            1 - head_h / 2,
            level_name(level),
            color=TEXT,
            fontsize=10.5,
            fontweight="bold",
            ha="center",
            va="center",
        )


def _draw_table(ax: Axes, ctx: _Context) -> None:
    """Long on purpose: one matplotlib table, cell by cell; splitting it would pass the axes around."""
    from matplotlib.patches import Rectangle

    res = ctx.result
    _text_panel(ax)
    label_w = 0.185
    cell_w = (1 - label_w) / len(LEVELS)
    head_h = 0.09
    cell_h = (1 - head_h) / len(CONDITIONS)
    level_headings(ax, label_w, cell_w, head_h)
    for r, condition in enumerate(CONDITIONS):
        y0 = 1 - head_h - (r + 1) * cell_h
        ax.text(
            label_w - 0.01,
            y0 + cell_h / 2,
            CONDITION_SHORT[condition],
            color=TEXT,
            fontsize=10,
            ha="right",
            va="center",
        )
        for n, level in enumerate(LEVELS):
            x0 = label_w + n * cell_w
            rid = row_id(res.study_id, condition, level)
            try:
                probs = res.probabilities(condition, level)
            except KeyError:
                ax.add_patch(
                    Rectangle(
                        (x0 + 0.003, y0 + 0.004), cell_w - 0.006, cell_h - 0.008, facecolor="#2a2d31", edgecolor="#555"
                    )
                )
                ax.text(x0 + cell_w / 2, y0 + cell_h / 2, "no row", color=DIM, fontsize=9, ha="center", va="center")
                continue
            best = int(np.argmax(probs))
            severity = SEVERITIES[best]
            colour = _cell_colour(severity, float(probs[best]))
            source = res.sources.get(rid, SOURCE_PRIOR)
            model = source == SOURCE_MODEL
            ax.add_patch(
                Rectangle(
                    (x0 + 0.003, y0 + 0.004),
                    cell_w - 0.006,
                    cell_h - 0.008,
                    facecolor=colour,
                    edgecolor="white" if not model else colour,
                    lw=1.2 if not model else 0.5,
                    linestyle="--" if not model else "-",
                )
            )
            ink = _text_colour(colour)
            ax.text(
                x0 + cell_w / 2,
                y0 + cell_h * 0.62,
                SEVERITY_LABELS[severity],
                color=ink,
                fontsize=9,
                fontweight="bold",
                ha="center",
                va="center",
            )
            ax.text(
                x0 + cell_w / 2,
                y0 + cell_h * 0.36,
                f"{100 * probs[best]:.0f}%",
                color=ink,
                fontsize=9.5,
                ha="center",
                va="center",
            )
            # the whole distribution as a thin stacked bar: normal/mild | moderate | severe
            # (shortened on cells not graded by the model, to make room for their mark at its end)
            bx, bw, by, bh = x0 + 0.012, cell_w - (0.024 if model else 0.05), y0 + 0.014, cell_h * 0.11
            acc = 0.0
            for s, pr in zip(SEVERITIES, probs, strict=True):
                ax.add_patch(
                    Rectangle(
                        (bx + acc * bw, by),
                        float(pr) * bw,
                        bh,
                        facecolor=SEVERITY_COLOURS[s],
                        edgecolor="black",
                        lw=0.3,
                    )
                )
                acc += float(pr)
            if not model:
                mark = SOURCE_MARKS.get(source, "?")
                ax.text(
                    x0 + cell_w - 0.011,
                    by + bh / 2,
                    mark,
                    color=ink,
                    fontsize=8.5,
                    fontweight="bold",
                    ha="right",
                    va="center",
                )
    ax.set_title(
        "Most probable grade (probability) · bar: P(normal/mild | moderate | severe)",
        color=TEXT,
        fontsize=9.5,
        loc="left",
    )


def _landmark_lines(ctx: _Context) -> list[tuple[str, str]]:
    """One line per level: confidence, canal source, axial and foramen slices, doubts; (text, colour).

    ``✗`` marks a projection the series does not reach; the reasons are why the confidence is below 1.
    """
    lms, proj = ctx.landmarks, ctx.result.projection
    if lms is None:
        return [
            ("no landmarks: no Sagittal T2/STIR segmentation;", "#ff8a65"),
            ("the grades come from the fallbacks", "#ff8a65"),
        ]
    out = [("level conf  canal from   axial T1 L/R      doubts", DIM)]
    for level in LEVELS:
        lm = lms.get(level)
        if lm is None:
            reason = next((m.reason for m in lms.missing if m.level == level), "not found")
            out.append((_clip_line(f"{level_name(level):6} missing: {reason}", _LANDMARK_CHARS), "#ff8a65"))
            continue
        axial, foramina = "—", "—"
        if proj is not None:
            ax = proj.axial_at(level)
            axial = "—" if ax is None else f"i{ax.instance_number}" + ("" if ax.reached else "✗")
            fl = [proj.foramen(level, s) for s in ("left", "right")]
            foramina = "/".join("—" if f is None else f"i{f.instance_number}" + ("" if f.reached else "✗") for f in fl)
        canal = _CANAL_SOURCE.get(lm.canal_source, lm.canal_source)
        text = f"{level_name(level):6}{lm.confidence:4.2f}  {canal:12} {axial:6}{foramina:12}"
        text += "; ".join(lm.reasons) if lm.reasons else "—"
        out.append((_clip_line(text, _LANDMARK_CHARS, squeeze=False), TEXT if lm.confidence >= 0.8 else "#ffb347"))
    return out


def _draw_legend_and_landmarks(ax: Axes, ctx: _Context) -> None:
    from matplotlib.patches import Rectangle

    _text_panel(ax)
    x = 0.0
    for s in SEVERITIES:
        ax.add_patch(Rectangle((x, 0.9), 0.03, 0.08, facecolor=SEVERITY_COLOURS[s], edgecolor="none"))
        ax.text(x + 0.04, 0.94, SEVERITY_LABELS[s], color=TEXT, fontsize=8.5, va="center")
        x += 0.19
    ax.text(0.575, 0.94, "faded: less probable · image labels alike", color=DIM, fontsize=8, va="center")
    ax.add_patch(Rectangle((0.0, 0.77), 0.03, 0.08, facecolor="#2a2d31", edgecolor="white", lw=1.0, linestyle="--"))
    ax.text(
        0.04,
        0.81,
        f"{SOURCE_MARKS[SOURCE_FALLBACK]}: axial fallback model   {SOURCE_MARKS[SOURCE_PRIOR]}: prior "
        "(no image evidence) — not graded by the main model",
        color=TEXT,
        fontsize=8.5,
        va="center",
    )
    y = 0.67
    for text, colour in _landmark_lines(ctx):
        ax.text(0.0, y, text, color=colour, fontsize=7.5, family="monospace", va="center", clip_on=True)
        y -= 0.11


def _draw_header(fig: Figure, ctx: _Context) -> None:
    res = ctx.result
    bundle = res.bundle.get("name") if res.bundle else None
    version = res.versions.get("spineseg") if res.versions else None
    title = f"Study {res.study_id}"
    fig.text(0.006, 0.985, title, color="white", fontsize=15, fontweight="bold", va="top")
    facts = [f"bundle: {bundle or '—'}"]
    if version:
        facts.append(f"spineseg {version}")
    n_series = {k: len(v) for k, v in res.series.items() if v}
    facts.append("series: " + (", ".join(f"{k} ×{n}" for k, n in n_series.items()) or "none"))
    lms = ctx.landmarks
    if lms is None:
        lm_text, lm_colour = "landmarks: none", "#ff8a65"
    else:
        lm_text = f"landmarks: {len(lms.levels)}/{len(LEVELS)} levels · anchor {lms.anchor} · source {lms.source}"
        lm_colour = TEXT
        if lms.unsure:
            lm_text += " · LEVEL NAMES UNSURE"
            lm_colour = "#ff5252"
    if res.has_rows:
        n_sources = Counter(res.sources.get(r, SOURCE_PRIOR) for r in _row_ids(res))
        grades = "grades: " + ", ".join(f"{n} {s}" for s, n in n_sources.most_common())
    else:
        grades = "grades: measured only (no grading bundle)"
    fig.text(0.2, 0.985, "   ".join(facts), color=DIM, fontsize=9.5, va="top")
    fig.text(0.2, 0.962, lm_text + "     " + grades, color=lm_colour, fontsize=9.5, va="top")
    for x, (what, items, colour) in (
        (0.006, ("fallback", res.fallbacks, "#ffb347")),
        (0.503, ("warning", res.warnings, "#ffe14d")),
    ):
        lines = [_clip_line(f"{what}: {item}", _LINE_CHARS) for item in items[:_HEADER_LINES]]
        if len(items) > _HEADER_LINES:
            lines.append(f"… and {len(items) - _HEADER_LINES} more {what}s (see result.json)")
        if not lines:
            lines, colour = [f"no {what}s"], "#7bd88f"
        fig.text(x, 0.942, "\n".join(lines), color=colour, fontsize=7.8, va="top", linespacing=1.15)


def _row_ids(res: StudyResult) -> list[str]:
    return [row_id(res.study_id, c, lv) for c in CONDITIONS for lv in LEVELS]
