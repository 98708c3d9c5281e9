"""The per-study ``report.png`` of ``spineseg predict``: one picture to check a study's result by eye.

A radiologist (or whoever checks a run) should see in a few seconds whether the numbers can be trusted:

* **Sagittal T2/STIR** – the slice through the canal landmarks, the segmentation outlined on it, each found
  level's disc (○) and canal (+) point with its name, its box coloured like the canal's grade. A wrong level
  name or a disc point off the disc is obvious here, and every finding downstream inherits it.
* **Sagittal T1** – one panel per side on the slice where most of that side's foramen points fall, with
  the points: they must sit in the foramina, not in the pedicles or the canal.
* **Axial T2** – one zoomed panel per level on the slice the projection chose, with the canal point and the
  subarticular crop centres: the crop the grade was read from must show the disc level, not a vertebra.
* **Grades** – conditions × levels, the most probable grade and its probability, coloured by severity;
  cells not graded by the main model (axial fallback, prior) are marked, since they carry less evidence.
* **Header** – study, bundle, landmark anchor and flags, the fallbacks and warnings of the run.

Whatever is missing (a series, the landmarks, the segmentation, unreadable pixels) gets a panel that says
so and why; the report never fails because the study is incomplete, which is exactly when it is needed.

Only the slices shown are read (each once; ``_Slices``), so a report costs about a second, not the minutes
of reading every stack. Figures are built with :class:`matplotlib.figure.Figure` and its own Agg canvas,
never pyplot: no global backend switch, no figure registry to leak, safe beside other threads. The PNG is
written to a temporary file next to ``path`` and moved onto it, so a crash never leaves half a picture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spine_seg.core.atomic import atomic_write
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES, SEVERITY_LABELS, SeriesKind, kaggle_level, row_id
from spine_seg.dicom import DicomError, SliceInfo, Stack, Study
from spine_seg.report.result import SOURCE_FALLBACK, SOURCE_MODEL, SOURCE_PRIOR, CropSource, StudyResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from spine_seg.landmarks import LandmarkSet
    from spine_seg.landmarks.project import ProjectedPoint
    from spine_seg.segmentation.predict import LabelVolume

#: 16 × 10 inches at 100 dpi: 1600 × 1000 px, readable on a laptop screen and well under 1.5 MB.
FIGSIZE_IN = (16.0, 10.0)
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


# ---------------------------------------------------------------------------------------------------------
# entry point


def write_report(path: str | Path, study: Study, result: StudyResult) -> Path:
    """Draw ``result`` over ``study``'s images and write the PNG atomically to ``path``; returns ``path``.

    The figure is saved to a temporary file in ``path``'s folder (same filesystem, so the final
    :func:`os.replace` is atomic) and removed if anything fails, so ``path`` holds either the previous
    report or the new one, never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = render_report(study, result)
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, facecolor=FIG_BG, metadata={"Software": None})
    )


def render_report(study: Study, result: StudyResult) -> Figure:
    """The report as a matplotlib Figure (not saved): for notebooks, and for :func:`write_report`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, facecolor=FIG_BG)
    ctx = _Context(study, result, _Slices(study))
    _draw_header(fig, ctx)
    top, height = 0.355, 0.51
    _draw_sagittal_t2(fig.add_axes((0.004, top, 0.25, height)), ctx)
    for n, side in enumerate(("right", "left")):  # radiological order: patient's right first
        _draw_sagittal_t1(fig.add_axes((0.258 + n * 0.19, top, 0.186, height)), ctx, side)
    _draw_table(fig.add_axes((0.645, 0.555, 0.35, 0.31)), ctx)
    _draw_legend_and_landmarks(fig.add_axes((0.645, top - 0.005, 0.35, 0.19)), ctx)
    for n, level in enumerate(LEVELS):
        _draw_axial(fig.add_axes((0.004 + n * 0.1995, 0.008, 0.1955, 0.315)), ctx, level)
    return fig


# ---------------------------------------------------------------------------------------------------------
# shared state: the study, the result, and the pixels read so far


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


# ---------------------------------------------------------------------------------------------------------
# drawing helpers


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
    """The table's colour of one (condition, level), or None without a row for it."""
    try:
        probs = ctx.result.probabilities(condition, level)
    except KeyError:
        return None
    best = int(np.argmax(probs))
    return _cell_colour(SEVERITIES[best], float(probs[best]))


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


# ---------------------------------------------------------------------------------------------------------
# Sagittal T2/STIR


def _t2_stack(ctx: _Context) -> tuple[Stack | None, str]:
    """The segmented stack when there is one, else the first Sagittal T2/STIR stack holding canal points."""
    seg_stack = ctx.result.segmentation_stack
    if seg_stack is not None and "series_id" in seg_stack:
        stack = ctx.slices.stack(str(seg_stack["series_id"]), int(seg_stack.get("stack", 0)))
        if stack is not None:
            return stack, ""
    _, segmented = ctx.study.segmentation_stack()
    if segmented is None:
        return None, f"no Sagittal T2/STIR series in study {ctx.study.study_id}: nothing was segmented"
    proj = ctx.result.projection
    if proj is not None and proj.canal:
        votes = Counter((p.hit.series_id, p.hit.stack_index) for p in proj.canal)
        (sid, idx), _ = votes.most_common(1)[0]
        found = ctx.slices.stack(sid, idx)
        if found is not None:
            return found, ""
    return segmented, ""


def _t2_slice(stack: Stack, ctx: _Context) -> tuple[int, str]:
    """The slice through the canal landmarks (median over levels), else the one with most canal label,
    else the middle one; and how it was chosen."""
    proj, lms = ctx.result.projection, ctx.landmarks
    ks = []
    if proj is not None:
        ks = [p.hit.k for p in proj.canal if (p.hit.series_id, p.hit.stack_index) == (stack.series_id, stack.index)]
    if not ks and lms is not None:
        ks = [stack.locate(lm.canal_xyz).k for lm in lms.levels]
    if ks:
        return int(np.median(ks)), "slice through the canal points"
    seg = ctx.result.segmentation
    if seg is not None and seg.shape == stack.shape and "spinal_canal" in seg.label_names.values():
        counts = seg.mask("spinal_canal").sum(axis=(1, 2))
        if counts.max() > 0:
            return int(np.argmax(counts)), "slice with most canal label"
    return stack.n_slices // 2, "middle slice"


def labels_on_slice(seg: LabelVolume, sl: SliceInfo) -> np.ndarray:
    """The segmentation's labels at each pixel of one slice (nearest voxel; 0 outside the label volume).

    Sampled through the affines, not indexed by ``k``: the label volume should share the slice's grid, but
    if it does not (another stack, a reversed slice order) the overlay still lands where the labels are.
    """
    jj, ii = np.mgrid[0 : sl.rows, 0 : sl.columns]
    iop = np.asarray(sl.iop, dtype=float)
    row_sp, col_sp = (float(v) for v in sl.pixel_spacing_mm)
    xyz = np.asarray(sl.ipp, dtype=float) + ii[..., None] * (col_sp * iop[:3]) + jj[..., None] * (row_sp * iop[3:])
    affine = np.asarray(seg.affine, dtype=float)
    ijk = (xyz - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    idx = np.rint(ijk).astype(np.int64)
    nk, nj, ni = seg.shape
    ok = (
        (idx[..., 0] >= 0)
        & (idx[..., 0] < ni)
        & (idx[..., 1] >= 0)
        & (idx[..., 1] < nj)
        & (idx[..., 2] >= 0)
        & (idx[..., 2] < nk)
    )
    out = np.zeros((sl.rows, sl.columns), dtype=np.uint8)
    out[ok] = seg.labels[idx[..., 2][ok], idx[..., 1][ok], idx[..., 0][ok]]
    return out


def _overlay(ax: Axes, labels2d: np.ndarray, names: Mapping[int, str], aspect: float) -> list[str]:
    """Translucent fill and bright outline of each label; returns the names drawn."""
    from matplotlib.colors import to_rgb

    present = [int(v) for v in np.unique(labels2d) if v != 0]
    if not present:
        return []
    rgba = np.zeros((*labels2d.shape, 4), dtype=np.float32)
    edge = np.zeros(labels2d.shape, dtype=bool)
    edge[1:, :] |= labels2d[1:, :] != labels2d[:-1, :]
    edge[:-1, :] |= labels2d[:-1, :] != labels2d[1:, :]
    edge[:, 1:] |= labels2d[:, 1:] != labels2d[:, :-1]
    edge[:, :-1] |= labels2d[:, :-1] != labels2d[:, 1:]
    for v in present:
        m = labels2d == v
        rgba[m, :3] = to_rgb(_SEG_COLOURS.get(names.get(v, ""), "#cccccc"))
        rgba[m, 3] = np.where(edge[m], 0.9, 0.16)
    ax.imshow(rgba, interpolation="nearest", aspect=aspect)
    return [names.get(v, str(v)) for v in present]


def _draw_sagittal_t2(ax: Axes, ctx: _Context) -> None:
    title = "Sagittal T2/STIR"
    stack, why = _t2_stack(ctx)
    if stack is None:
        _missing(ax, title, why)
        return
    k, how = _t2_slice(stack, ctx)
    sl = stack.slices[k]
    img = _read(ax, ctx, stack, k, title)
    if img is None:
        return
    marks = []  # (level, disc xy, disc on slice, canal xy, canal on slice, confidence)
    if ctx.landmarks is not None:
        for lm in ctx.landmarks.levels:
            dx, dy, dd = sl.world_to_pixel(lm.disc_xyz)
            cx, cy, cd = sl.world_to_pixel(lm.canal_xyz)
            marks.append((lm, (dx, dy), _on_slice(dd, stack), (cx, cy), _on_slice(cd, stack)))
    pts = [m[1] for m in marks] + [m[3] for m in marks]
    aspect_wh = ax.get_position().width * FIGSIZE_IN[0] / (ax.get_position().height * FIGSIZE_IN[1])
    view = _view(pts, (sl.rows, sl.columns), sl.pixel_spacing_mm, SAGITTAL_MARGIN_MM + 15, aspect_wh)
    _image(ax, img, view, sl)
    row_sp, col_sp = (float(v) for v in sl.pixel_spacing_mm)
    seg = ctx.result.segmentation
    seg_note = "no segmentation"
    if seg is not None:
        drawn = _overlay(ax, labels_on_slice(seg, sl), seg.label_names, row_sp / col_sp)
        seg_note = f"segmentation: {len(drawn)} labels on this slice" if drawn else "segmentation: none on this slice"
    for lm, (dx, dy), d_on, (cx, cy), c_on in marks:
        colour = "#ffb347" if lm.confidence >= 0.8 else "#ff5252"
        ax.plot([dx, cx], [dy, cy], "-", color=colour, lw=0.8, alpha=0.7)
        # rings, not dots: the tissue under the point is what has to be checked
        ax.plot(dx, dy, "o", ms=9, mfc="none", mec=colour, mew=1.6, alpha=1.0 if d_on else 0.45)
        ax.plot(cx, cy, "+", ms=11, mew=2.0, color="#00e5ff", alpha=1.0 if c_on else 0.45)
        # the name goes in front of the disc: along canal → disc, past the vertebral body's front
        v = np.array([(dx - cx) * col_sp, (dy - cy) * row_sp])
        v = v / np.linalg.norm(v) if np.linalg.norm(v) > 1e-6 else np.array([-1.0, 0.0])
        lx, ly = dx + v[0] * 26 / col_sp, dy + v[1] * 26 / row_sp
        name = level_name(lm.level) + ("" if lm.confidence >= 0.8 else f" ? {lm.confidence:.2f}")
        _label(
            ax,
            lx,
            ly,
            name,
            colour,
            ha="left" if v[0] >= 0 else "right",
            fill=_grade_fill(ctx, "spinal_canal_stenosis", lm.level),
        )
    flags = []
    if ctx.landmarks is not None and ctx.landmarks.unsure:
        flags.append("LEVEL NAMES UNSURE")
    ax.set_title(
        f"{title} · series {stack.series_id} · inst {sl.instance_number} ({k + 1}/{stack.n_slices})",
        color=TEXT,
        fontsize=9.5,
        loc="left",
    )
    lines = [f"{how} · {seg_note}", "○ disc  + canal  dim: off this slice  red: confidence < 0.8"]
    if ctx.landmarks is None:
        lines.insert(0, "no landmarks")
    _corner_note(ax, "\n".join(lines))
    if flags:
        _corner_note(ax, " · ".join(flags), colour="#ff5252", where="top")


# ---------------------------------------------------------------------------------------------------------
# Sagittal T1: foramina


def _draw_sagittal_t1(ax: Axes, ctx: _Context, side: str) -> None:
    title = f"Sagittal T1 · {side} foramina"
    if not ctx.study.series_of_kind(SeriesKind.SAGITTAL_T1):
        _missing(ax, title, f"no Sagittal T1 series in study {ctx.study.study_id}")
        return
    proj = ctx.result.projection
    if proj is None or ctx.landmarks is None:
        _missing(ax, title, "no landmarks to project (no Sagittal T2/STIR segmentation)")
        return
    points = [p for lv in LEVELS if (p := proj.foramen(lv, side)) is not None]
    if not points:
        _missing(ax, title, "no level found, so no foramen to show")
        return
    (sid, idx), _ = Counter((p.hit.series_id, p.hit.stack_index) for p in points).most_common(1)[0]
    stack = ctx.slices.stack(sid, idx)
    if stack is None:
        _missing(ax, title, f"series {sid} stack {idx} not in the study")
        return
    here = [p for p in points if (p.hit.series_id, p.hit.stack_index) == (sid, idx)]
    mean_k = float(np.mean([p.hit.k for p in here]))
    counts = Counter(p.hit.k for p in here)
    top = max(counts.values())
    k = min((kk for kk, c in counts.items() if c == top), key=lambda kk: abs(kk - mean_k))
    sl = stack.slices[k]
    img = _read(ax, ctx, stack, k, title)
    if img is None:
        return
    placed = []
    for p in points:
        x, y, _d = sl.world_to_pixel(np.asarray(p.xyz_lps_mm))
        same = (p.hit.series_id, p.hit.stack_index, p.hit.k) == (sid, idx, k)
        placed.append((p, x, y, same))
    canal_px = [sl.world_to_pixel(lm.canal_xyz)[:2] for lm in ctx.landmarks.levels]
    aspect_wh = ax.get_position().width * FIGSIZE_IN[0] / (ax.get_position().height * FIGSIZE_IN[1])
    view = _view(
        [(x, y) for _, x, y, _ in placed] + canal_px,
        (sl.rows, sl.columns),
        sl.pixel_spacing_mm,
        SAGITTAL_MARGIN_MM,
        aspect_wh,
    )
    _image(ax, img, view, sl)
    col_sp = float(sl.pixel_spacing_mm[1])
    for p, x, y, same in placed:
        if not p.reached:
            colour, marker = "#ff5252", "x"
        else:
            colour, marker = "#ffe14d", "o"
        ax.plot(x, y, marker, ms=11, mfc="none", mec=colour, color=colour, mew=1.8, alpha=1.0 if same else 0.45)
        note = level_name(p.level)
        if not same:
            note += f" (inst {p.hit.instance_number})"
        if not p.reached:
            note += " not reached"
        _label(
            ax,
            x + 6 / col_sp,
            y,
            note,
            colour,
            fontsize=8,
            fill=_grade_fill(ctx, f"{side}_neural_foraminal_narrowing", p.level),
        )
    others = sorted({p.hit.instance_number for p in points} - {sl.instance_number})
    ax.set_title(
        f"{title} · inst {sl.instance_number} ({k + 1}/{stack.n_slices})", color=TEXT, fontsize=9.5, loc="left"
    )
    lines = [
        f"series {sid}" + (f" · other points on inst {', '.join(map(str, others))}" if others else ""),
        "○ foramen  dim: on another slice  × outside the T1",
    ]
    _corner_note(ax, "\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# Axial T2: one panel per level


def _axial_source(ctx: _Context, level: str) -> tuple[Stack | None, int, ProjectedPoint | None, str]:
    """Which axial slice to show for a level: the projection's, else a subarticular crop's; or why none."""
    proj = ctx.result.projection
    p = proj.axial_at(level) if proj is not None else None
    if p is not None:
        stack = ctx.slices.stack(p.hit.series_id, p.hit.stack_index)
        if stack is not None:
            return stack, p.hit.k, p, ""
    for condition in ("left_subarticular_stenosis", "right_subarticular_stenosis"):
        crop = ctx.crop(condition, level)
        if crop is None:
            continue
        stack = ctx.slices.stack(crop.series_id, crop.stack)
        k = stack.slice_of_instance(crop.instance_number) if stack is not None else None
        if stack is not None and k is not None:
            return stack, k, None, ""
    if not ctx.study.series_of_kind(SeriesKind.AXIAL_T2):
        return None, 0, None, "no Axial T2 series in the study"
    if ctx.landmarks is None:
        return None, 0, None, "no landmarks (no Sagittal T2/STIR segmentation)"
    missing = next((m for m in ctx.landmarks.missing if m.level == level), None)
    if missing is not None:
        return None, 0, None, f"level not found: {missing.reason}"
    return None, 0, None, "no axial slice projected for this level"


def _draw_axial(ax: Axes, ctx: _Context, level: str) -> None:
    title = f"{level_name(level)} · Axial T2"
    stack, k, p, why = _axial_source(ctx, level)
    if stack is None:
        _missing(ax, title, why)
        return
    sl = stack.slices[k]
    img = _read(ax, ctx, stack, k, title)
    if img is None:
        return
    reached = p is None or p.reached
    centre: list[tuple[float, float]] = []
    if p is not None and p.hit.inside_fov:
        centre.append((p.hit.x_px, p.hit.y_px))
    crops = []
    for condition, tag in (("left_subarticular_stenosis", "L"), ("right_subarticular_stenosis", "R")):
        crop = ctx.crop(condition, level)
        if crop is None:
            continue
        same = (crop.series_id, crop.stack, crop.instance_number) == (stack.series_id, stack.index, sl.instance_number)
        x, y = (crop.x_px, crop.y_px) if same else sl.world_to_pixel(np.asarray(crop.xyz_lps_mm))[:2]
        crops.append((tag, crop, x, y, same))
    if not centre:
        centre = [(x, y) for _, _, x, y, _ in crops]
    view = _view(centre, (sl.rows, sl.columns), sl.pixel_spacing_mm, 0.0, 1.0, min_half_mm=AXIAL_HALF_FOV_MM)
    _image(ax, img, view, sl, alpha=1.0 if reached else 0.45)
    col_sp = float(sl.pixel_spacing_mm[1])
    if p is not None:
        ax.plot(p.hit.x_px, p.hit.y_px, "+", ms=12, mew=2.0, color="#00e5ff" if reached else "#5c8a93")
    canal_x = p.hit.x_px if p is not None else (float(np.mean([c[2] for c in crops])) if crops else 0.0)
    for tag, crop, x, y, same in crops:
        colour = "#ff6ec7"
        ax.plot(x, y, "s", ms=9, mfc="none", mec=colour, mew=1.8, alpha=1.0 if same else 0.5)
        note = tag if same else f"{tag} (inst {crop.instance_number})"
        away = 1.0 if x >= canal_x else -1.0  # the name goes outwards, off the canal
        _label(
            ax,
            x + away * 7 / col_sp,
            y,
            note,
            colour,
            fontsize=8,
            ha="left" if away > 0 else "right",
            fill=_grade_fill(ctx, crop.condition, level),
        )
    parts = [f"inst {sl.instance_number}"]
    if p is not None:
        parts.append(f"{abs(p.plane_distance_mm):.1f} mm")
    ax.set_title(f"{title} · " + " · ".join(parts), color=TEXT if reached else "#ff8a65", fontsize=9.5, loc="left")
    if not reached and p is not None:
        where = (
            "outside the field of view"
            if not p.hit.inside_fov
            else f"nearest slice {abs(p.plane_distance_mm):.1f} mm away"
        )
        ax.text(
            0.5,
            0.5,
            f"NOT REACHED\n{where}",
            color="#ff8a65",
            fontsize=11,
            fontweight="bold",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    note = f"series {stack.series_id}"
    if p is None:
        note += " · the crop's slice (no projection)"
    elif p.disc_distance_mm is not None:
        note += f" · disc centre {abs(p.disc_distance_mm):.1f} mm"
    _corner_note(ax, note + "\n+ canal  □ subarticular crop centre (L/R: patient side)")


# ---------------------------------------------------------------------------------------------------------
# grades table, legend, landmark summary


def _cell_colour(severity: str, probability: float) -> np.ndarray:
    """Severity colour, fading towards the panel's grey as the grade's probability drops to chance (1/3)."""
    from matplotlib.colors import to_rgb

    t = float(np.clip((probability - 1 / 3) / (2 / 3), 0.0, 1.0))
    strength = 0.3 + 0.7 * t
    base, grey = np.array(to_rgb(SEVERITY_COLOURS[severity])), np.array(to_rgb("#2a2d31"))
    return grey + (base - grey) * strength


def _draw_table(ax: Axes, ctx: _Context) -> None:
    from matplotlib.patches import Rectangle

    res = ctx.result
    ax.set_facecolor(FIG_BG)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    label_w = 0.185
    cell_w = (1 - label_w) / len(LEVELS)
    head_h = 0.09
    cell_h = (1 - head_h) / len(CONDITIONS)
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

    ax.set_facecolor(FIG_BG)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
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


# ---------------------------------------------------------------------------------------------------------
# header


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
    n_sources = Counter(res.sources.get(r, SOURCE_PRIOR) for r in _row_ids(res))
    grades = "grades: " + ", ".join(f"{n} {s}" for s, n in n_sources.most_common())
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


__all__ = ["labels_on_slice", "level_name", "render_report", "write_report"]
