"""What every panel of the report shares: the study and result being drawn (``_Context``), the slices read
so far (``_Slices``: each once), and the small drawing helpers (views, labels, notes, missing panels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spine_seg.core.constants import SEVERITIES, row_id
from spine_seg.dicom import DicomError, SliceInfo, Stack, Study
from spine_seg.report.result import CropSource, StudyResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from spine_seg.landmarks import LandmarkSet
from spine_seg.report.style import _LINE_CHARS, DIM, FIG_BG, ON_SLICE_TOLERANCE_MM, PANEL_BG, SEVERITY_COLOURS, TEXT


class _Slices:
    """Pixels of the slices the report shows, each read once (the slow part is DICOM decoding).

    Cached per slice, not per stack: a report shows one slice of each sagittal and at most five axial
    slices, and reading whole stacks (60+ axial images) would cost several times more for nothing.
    """

    def __init__(self, study: Study) -> None:
        self.study = study
        self._pixels: dict[tuple[str, int, int], np.ndarray] = {}

    def stack(self, series_id: str, stack_index: int) -> Stack | None:
        try:
            series = self.study.get_series(series_id)
        except KeyError:
            return None
        return next((st for st in series.stacks if st.index == stack_index), None)

    def pixels(self, stack: Stack, k: int) -> np.ndarray:
        key = (stack.series_id, stack.index, k)
        if key not in self._pixels:
            self._pixels[key] = stack.slices[k].load()
        return self._pixels[key]


@dataclass(frozen=True)
class _Context:
    study: Study
    result: StudyResult
    slices: _Slices

    @property
    def landmarks(self) -> LandmarkSet | None:
        return self.result.landmarks

    def crop(self, condition: str, level: str) -> CropSource | None:
        return self.result.crops.get(row_id(self.result.study_id, condition, level))


def _text_colour(rgb: Sequence[float] | np.ndarray) -> str:
    """Black on light cells, white on dark ones (relative luminance)."""
    r, g, b = (float(v) for v in rgb[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def _clip_line(text: str, n: int = _LINE_CHARS, squeeze: bool = True) -> str:
    """One line of at most ``n`` characters (``squeeze``: runs of whitespace and newlines become one space)."""
    text = " ".join(str(text).split()) if squeeze else str(text).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _blank(ax: Axes) -> None:
    ax.set_facecolor(PANEL_BG)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#30343a")


def _missing(ax: Axes, title: str, why: str) -> None:
    """A panel that says clearly what is missing and why (instead of an empty frame)."""
    import textwrap

    _blank(ax)
    ax.set_title(title, color=TEXT, fontsize=10, loc="left")
    ax.text(
        0.5,
        0.58,
        "missing",
        color="#ff8a65",
        fontsize=14,
        fontweight="bold",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )
    ax.text(
        0.5,
        0.45,
        textwrap.fill(_clip_line(why, 240), 34),
        color=DIM,
        fontsize=9,
        ha="center",
        va="top",
        transform=ax.transAxes,
    )


def _view(
    points_px: Sequence[tuple[float, float]],
    shape: tuple[int, int],
    pixel_spacing_mm: tuple[float, float],
    margin_mm: float,
    aspect_wh: float,
    min_half_mm: float = 0.0,
) -> tuple[float, float, float, float]:
    """The image region (x0, x1, y0, y1 in pixels) around ``points_px`` plus a margin, shaped like its panel.

    Zooming on the lumbar spine makes the landmarks readable; matching the panel's width/height (in mm,
    since rows and columns may differ in spacing) uses the whole panel. Without points: the whole image.
    """
    rows, cols = shape
    row_sp, col_sp = (float(v) for v in pixel_spacing_mm)
    full = (-0.5, cols - 0.5, -0.5, rows - 0.5)
    pts = np.array([p for p in points_px if np.all(np.isfinite(p))], dtype=float).reshape(-1, 2)
    if not len(pts):
        return full
    xs, ys = pts[:, 0] * col_sp, pts[:, 1] * row_sp  # mm
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    half_w = max((xs.max() - xs.min()) / 2 + margin_mm, min_half_mm)
    half_h = max((ys.max() - ys.min()) / 2 + margin_mm, min_half_mm)
    if half_w / half_h < aspect_wh:
        half_w = half_h * aspect_wh
    else:
        half_h = half_w / aspect_wh
    width_mm, height_mm = cols * col_sp, rows * row_sp
    half_w, half_h = min(half_w, width_mm / 2), min(half_h, height_mm / 2)
    # shift (not shrink) the window back inside the image
    cx = float(np.clip(cx, half_w - 0.5 * col_sp, width_mm - half_w - 0.5 * col_sp))
    cy = float(np.clip(cy, half_h - 0.5 * row_sp, height_mm - half_h - 0.5 * row_sp))
    return ((cx - half_w) / col_sp, (cx + half_w) / col_sp, (cy - half_h) / row_sp, (cy + half_h) / row_sp)


def _image(
    ax: Axes, img: np.ndarray, view: tuple[float, float, float, float], sl: SliceInfo, alpha: float = 1.0
) -> None:
    """Show a slice windowed by the percentiles of the region shown (not the whole field of view, whose
    fat and air would wash out the spine), in physical proportions."""
    _blank(ax)
    x0, x1, y0, y1 = view
    r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, img.shape[0])
    c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, img.shape[1])
    region = img[r0:r1, c0:c1]
    finite = region[np.isfinite(region)] if region.size else img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    row_sp, col_sp = sl.pixel_spacing_mm
    ax.imshow(
        np.nan_to_num(img),
        cmap="gray",
        vmin=float(lo),
        vmax=float(max(hi, lo + 1e-6)),
        interpolation="bilinear",
        aspect=float(row_sp) / float(col_sp),
        alpha=alpha,
    )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)


def _on_slice(distance_mm: float, stack: Stack) -> bool:
    return abs(distance_mm) <= 0.5 * stack.slice_spacing_mm + ON_SLICE_TOLERANCE_MM


def _label(
    ax: Axes,
    x: float,
    y: float,
    text: str,
    colour: str,
    fontsize: float = 8.5,
    ha: str = "left",
    fill: Sequence[float] | np.ndarray | None = None,
) -> None:
    """A point's name; with ``fill`` (a grade's cell colour) the box repeats the table next to the image."""
    if fill is None:
        box = {"boxstyle": "round,pad=0.15", "facecolor": "black", "edgecolor": "none", "alpha": 0.55}
    else:
        box = {
            "boxstyle": "round,pad=0.2",
            "facecolor": tuple(fill),
            "edgecolor": colour,
            "linewidth": 1.0,
            "alpha": 0.9,
        }
        colour = _text_colour(fill)
    ax.text(x, y, text, color=colour, fontsize=fontsize, ha=ha, va="center", fontweight="bold", clip_on=True, bbox=box)


def _grade_fill(ctx: _Context, condition: str, level: str) -> np.ndarray | None:
    """The table's colour of one (condition, level), or None without a row for it; without competition rows,
    the measured grade's colour where one exists (spinal canal stenosis)."""
    if not ctx.result.has_rows:
        g = ctx.result.measured_grade(condition, level)
        if g is None or g.probabilities is None:
            return None
        probs = np.asarray(g.probabilities, float)
        best = int(np.argmax(probs))
        return _cell_colour(SEVERITIES[best], float(probs[best])) if len(probs) == len(SEVERITIES) else None
    try:
        probs = ctx.result.probabilities(condition, level)
    except KeyError:
        return None
    best = int(np.argmax(probs))
    return _cell_colour(SEVERITIES[best], float(probs[best]))


def _text_panel(ax: Axes) -> None:
    """An axes for text and cells drawn in unit coordinates on the figure's background (tables, legends)."""
    ax.set_facecolor(FIG_BG)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")


def _corner_note(ax: Axes, text: str, colour: str = DIM, where: str = "bottom") -> None:
    y, va = (0.01, "bottom") if where == "bottom" else (0.99, "top")
    ax.text(
        0.01,
        y,
        text,
        color=colour,
        fontsize=7.5,
        ha="left",
        va=va,
        transform=ax.transAxes,
        clip_on=True,
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "black", "edgecolor": "none", "alpha": 0.6},
    )


def _read(ax: Axes, ctx: _Context, stack: Stack, k: int, title: str) -> np.ndarray | None:
    """The slice's pixels, or a "missing" panel naming the file that could not be read."""
    try:
        return ctx.slices.pixels(stack, k)
    except (DicomError, OSError, ValueError) as exc:
        _missing(ax, title, f"pixels unreadable: {exc}")
        return None


def _cell_colour(severity: str, probability: float) -> np.ndarray:
    """Severity colour, fading towards the panel's grey as the grade's probability drops to chance (1/3)."""
    from matplotlib.colors import to_rgb

    t = float(np.clip((probability - 1 / 3) / (2 / 3), 0.0, 1.0))
    strength = 0.3 + 0.7 * t
    base, grey = np.array(to_rgb(SEVERITY_COLOURS[severity])), np.array(to_rgb("#2a2d31"))
    return grey + (base - grey) * strength
