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
* **Measurements** (the band below) – the canal's antero-posterior diameter along the spine with the levels
  marked and each level's narrowest point circled (the narrowest of all in red), and the table of
  measurements per level (``spine_seg.measurements``). Without a grading bundle the grade table shows the
  measured grades instead, and says that the competition rows were not produced.

Whatever is missing (a series, the landmarks, the segmentation, unreadable pixels) gets a panel that says
so and why; the report never fails because the study is incomplete, which is exactly when it is needed.

Only the slices shown are read (each once; ``_Slices``), so a report costs about a second, not the minutes
of reading every stack. Figures are built with :class:`matplotlib.figure.Figure` and its own Agg canvas,
never pyplot: no global backend switch, no figure registry to leak, safe beside other threads. The PNG is
written to a temporary file next to ``path`` and moved onto it, so a crash never leaves half a picture.

The panels live in ``images`` and ``summary``, their shared state in ``canvas``, the look in ``style``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spine_seg.core.atomic import atomic_write
from spine_seg.core.constants import LEVELS
from spine_seg.dicom import Study
from spine_seg.report.result import StudyResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

from spine_seg.report.canvas import _Context, _Slices
from spine_seg.report.images import _draw_axial, _draw_sagittal_t1, _draw_sagittal_t2, labels_on_slice
from spine_seg.report.measures import draw_measured_grades, draw_measurement_table, draw_profile
from spine_seg.report.style import DPI, FIG_BG, FIGSIZE_IN, MEASURE_BAND_IN, level_name
from spine_seg.report.summary import _draw_header, _draw_legend_and_landmarks, _draw_table


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
    """The report as a matplotlib Figure (not saved): for notebooks, and for :func:`write_report`.

    Two bands: the images, grades and landmarks above (with the measured grades in the grade table's place
    when there are no competition rows); the measurements below (the canal's diameter along the spine and
    the table of numbers per level)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGSIZE_IN[0], FIGSIZE_IN[1] + MEASURE_BAND_IN), dpi=DPI, facecolor=FIG_BG)
    main, band = fig.subfigures(2, 1, height_ratios=(FIGSIZE_IN[1], MEASURE_BAND_IN), facecolor=FIG_BG)  # type: ignore[misc]
    ctx = _Context(study, result, _Slices(study))
    _draw_header(main, ctx)
    top, height = 0.355, 0.51
    _draw_sagittal_t2(main.add_axes((0.004, top, 0.25, height)), ctx)
    for n, side in enumerate(("right", "left")):  # radiological order: patient's right first
        _draw_sagittal_t1(main.add_axes((0.258 + n * 0.19, top, 0.186, height)), ctx, side)
    table_ax = main.add_axes((0.645, 0.555, 0.35, 0.31))
    if result.has_rows:
        _draw_table(table_ax, ctx)
    else:
        draw_measured_grades(table_ax, ctx)
    _draw_legend_and_landmarks(main.add_axes((0.645, top - 0.005, 0.35, 0.19)), ctx)
    for n, level in enumerate(LEVELS):
        _draw_axial(main.add_axes((0.004 + n * 0.1995, 0.008, 0.1955, 0.315)), ctx, level)
    draw_profile(band.add_axes((0.04, 0.17, 0.42, 0.72)), ctx)
    draw_measurement_table(band.add_axes((0.5, 0.02, 0.495, 0.95)), ctx)
    return fig


__all__ = ["labels_on_slice", "level_name", "render_report", "write_report"]
