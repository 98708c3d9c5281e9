"""The image panels of the report: the Sagittal T2/STIR (the slice through the canal points, the segmentation,
the level names), the Sagittal T1 per side (the foramina) and one Axial T2 per level (the subarticular crops).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from spine_seg.core.constants import LEVELS, SeriesKind
from spine_seg.dicom import SliceInfo, Stack

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from spine_seg.landmarks.project import ProjectedPoint
    from spine_seg.segmentation.predict import LabelVolume
from spine_seg.report.canvas import (
    _Context,
    _corner_note,
    _grade_fill,
    _image,
    _label,
    _missing,
    _on_slice,
    _read,
    _view,
)
from spine_seg.report.style import _SEG_COLOURS, AXIAL_HALF_FOV_MM, FIGSIZE_IN, SAGITTAL_MARGIN_MM, TEXT, level_name


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
