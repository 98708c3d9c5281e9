"""``report.png``: drawn for a synthetic study from its true mask (no trained model needed), for studies that
lack parts, for the real RSNA study, and written atomically.

The synthetic study's StudyResult is assembled by hand the way ``predict`` would: landmarks from the true
Sagittal T2 mask, their projection, the mask as the segmentation on the Sagittal T2 stack's grid, made-up
probabilities with a mix of sources, and subarticular crop points where the generator put the recesses.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from spine_seg.core.constants import (
    CONDITIONS,
    LEVELS,
    SEVERITIES,
    SEVERITY_LABELS,
    SeriesKind,
    normalize_condition,
    normalize_level,
    normalize_severity,
    row_id,
    row_ids,
)
from spine_seg.core.labels import SEG_LABELS
from spine_seg.dicom import Stack, Study, load_study
from spine_seg.landmarks import LandmarkSet, landmarks_from_labels, landmarks_from_points, load_label_volume
from spine_seg.landmarks.project import project_landmarks
from spine_seg.report import figure
from spine_seg.report.figure import labels_on_slice, level_name, write_report
from spine_seg.report.result import SOURCE_FALLBACK, SOURCE_MODEL, SOURCE_PRIOR, CropSource, StudyResult
from spine_seg.report.style import CONDITION_SHORT, SOURCE_MARKS
from spine_seg.segmentation.predict import LabelVolume
from spine_seg.synthetic import CohortConfig, generate_cohort

SEG_NAMES = {v: k for k, v in SEG_LABELS.items()}
SIZE_PX = (1340, 1600)  # rows, columns of a 16 × (10 + 3.4) in figure at 100 dpi: the report and its measurement band
SUBARTICULAR = ("left_subarticular_stenosis", "right_subarticular_stenosis")


# --- building a StudyResult without any model ---------------------------------------------------------------


def labels_on_stack_grid(labels: np.ndarray, affine: np.ndarray, stack: Stack) -> np.ndarray:
    """A mask's labels re-indexed onto a DICOM stack's voxel grid.

    The synthetic cohort writes each SPIDER mask on the same voxels as its Sagittal T2 series but in the
    generator's slice order, while ``load_study`` sorts slices along the normal (the reverse for these
    studies). The voxel centres must coincide (checked); only their order differs.
    """
    idx = np.indices(stack.shape).reshape(3, -1)[::-1]  # (i, j, k) of every stack voxel
    world = stack.affine[:3, :3] @ idx + stack.affine[:3, 3:4]
    ijk = np.linalg.solve(affine[:3, :3], world - affine[:3, 3:4])
    assert np.abs(ijk - np.rint(ijk)).max() < 1e-3, "the mask and the Sagittal T2 stack are not the same grid"
    i, j, k = np.rint(ijk).astype(int)
    assert labels.shape == stack.shape
    return labels[k, j, i].reshape(stack.shape)


def made_up_submission(study_id: str, rng: np.random.Generator) -> pd.DataFrame:
    """25 valid rows (each sums to 1), peaked so that every severity wins somewhere."""
    rows = []
    for n, rid in enumerate(row_ids(study_id)):
        alpha = np.full(3, 0.6)
        alpha[n % 3] = 4.0
        p = rng.dirichlet(alpha)
        rows.append({"row_id": rid, **dict(zip(SEVERITIES, p, strict=True))})
    return pd.DataFrame(rows)


def mixed_sources(study_id: str, projection) -> dict[str, str]:
    """Model everywhere, the axial fallback for subarticular rows of levels the axial series misses, and
    the prior for one row: every kind of source appears in the table."""
    out = {rid: SOURCE_MODEL for rid in row_ids(study_id)}
    reached = set(projection.axial_levels_reached) if projection is not None else set()
    for c in SUBARTICULAR:
        for lv in LEVELS:
            if lv not in reached or lv == "l1_l2":
                out[row_id(study_id, c, lv)] = SOURCE_FALLBACK
    out[row_id(study_id, "spinal_canal_stenosis", "l1_l2")] = SOURCE_PRIOR
    return out


def make_result(
    study: Study,
    *,
    landmarks: LandmarkSet | None,
    segmentation: LabelVolume | None,
    seg_stack: Stack | None,
    crops: dict[str, CropSource],
    seed: int = 0,
    fallbacks: tuple[str, ...] = (),
    warnings: tuple[str, ...] = (),
) -> StudyResult:
    projection = project_landmarks(landmarks, study) if landmarks is not None else None
    return StudyResult(
        study_id=study.study_id,
        folder=study.root,
        submission=made_up_submission(study.study_id, np.random.default_rng(seed)),
        sources=mixed_sources(study.study_id, projection),
        landmarks=landmarks,
        projection=projection,
        segmentation=segmentation,
        segmentation_stack=None
        if seg_stack is None
        else {
            "series_id": seg_stack.series_id,
            "stack": seg_stack.index,
            "shape_kji": list(seg_stack.shape),
            "spacing_mm": list(seg_stack.spacing_mm),
        },
        crops=crops,
        series={
            k.value: tuple(s.series_id for s in study.series_of_kind(k)) for k in SeriesKind if study.series_of_kind(k)
        },
        fallbacks=fallbacks,
        warnings=warnings,
        timings_s={"total": 1.0},
        versions={"spineseg": "test"},
        bundle={"name": "test-bundle"},
    )


def subarticular_crops(study: Study, truth: dict) -> dict[str, CropSource]:
    """Crop sources at the generator's subarticular points, on the axial slice nearest each (covered levels)."""
    axial = study.series_of_kind(SeriesKind.AXIAL_T2)
    out = {}
    for lv in truth["axial_levels"]:
        for condition in SUBARTICULAR:
            side = condition.split("_")[0]
            xyz = np.asarray(truth["landmarks_lps_mm"][lv][f"{side}_subarticular"], dtype=float)
            hits = [s.locate(xyz) for s in axial]
            hit = min(hits, key=lambda h: (not h.inside_fov, abs(h.distance_mm)))
            out[row_id(study.study_id, condition, lv)] = CropSource(
                condition,
                lv,
                hit.series_id,
                hit.stack_index,
                hit.instance_number,
                tuple(float(v) for v in xyz),
                hit.x_px,
                hit.y_px,
                hit.distance_mm,
                side == "right",
            )
    return out


@dataclasses.dataclass(frozen=True)
class Synthetic:
    study: Study
    result: StudyResult
    seg_stack: Stack
    raw_labels: np.ndarray  # the mask as the cohort wrote it
    raw_affine: np.ndarray


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    root = tmp_path_factory.mktemp("report_cohort") / "cohort"
    generate_cohort(root, CohortConfig(n_studies=1, seed=3, test_fraction=0.0))
    overview = pd.read_csv(root / "spider" / "overview.csv", dtype=str)
    row = overview[overview.new_file_name.str.endswith("_t2")].iloc[0]
    sid = row.synthetic_study_id
    labels, affine = load_label_volume(root / "spider" / "masks" / f"{row.new_file_name}.mha", spider=True)
    truth = json.loads((root / "truth" / f"{sid}.json").read_text())
    study = load_study(root / "train_images" / sid)
    (t2,) = study.series_of_kind(SeriesKind.SAGITTAL_T2)
    (stack,) = t2.stacks
    on_grid = labels_on_stack_grid(labels, affine, stack)
    seg = LabelVolume(on_grid, stack.affine, SEG_NAMES)
    result = make_result(
        study,
        landmarks=landmarks_from_labels(on_grid, stack.affine),
        segmentation=seg,
        seg_stack=stack,
        crops=subarticular_crops(study, truth),
        fallbacks=("left_subarticular_stenosis l1_l2: axial fallback (test)",),
        warnings=tuple(f"warning number {n}: " + "long text " * 20 for n in range(5)),
    )
    return Synthetic(study, result, stack, labels, affine)


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path)


def assert_picture(path: Path) -> np.ndarray:
    img = read_png(path)
    assert img.shape[:2] == SIZE_PX, img.shape
    assert float(img[..., :3].std()) > 0.05, "the report is (nearly) uniform"
    assert path.stat().st_size < 1_500_000
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temporary files left behind"
    return img


def without(study: Study, *kinds: SeriesKind) -> Study:
    return dataclasses.replace(study, series=tuple(s for s in study.series if s.kind not in kinds))


# --- what the panels say: read from the very figure write_report saved ------------------------------------


def written(path: Path, study: Study, result: StudyResult) -> Figure:
    """``write_report`` (the picture checked by :func:`assert_picture`), returning the figure it saved."""
    figures: list[Figure] = []
    render = figure.render_report

    def keep(*args: Any) -> Figure:
        figures.append(render(*args))
        return figures[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figure, "render_report", keep)
        assert_picture(write_report(path, study, result))
    (fig,) = figures
    return fig


def _flat(text: str) -> str:
    """A drawn text on one line (panels wrap long reasons)."""
    return " ".join(text.split())


def panel(fig: Figure, title: str) -> tuple[str, list[str]]:
    """The one panel whose title starts with ``title``: its full title and the texts drawn in it."""
    (ax,) = [ax for ax in fig.axes if ax.get_title(loc="left").startswith(title)]
    return ax.get_title(loc="left"), [_flat(t.get_text()) for t in ax.texts]


def header(fig: Any) -> list[str]:
    """The header's lines (study, bundle, series, landmarks, grades, fallbacks, warnings): the texts drawn on
    the figure itself, not in a panel, also where a part of it is a subfigure."""
    lines = [line for t in fig.texts for line in t.get_text().splitlines()]
    return lines + [line for sub in getattr(fig, "subfigs", ()) for line in header(sub)]


def missing_panel(fig: Figure, title: str) -> str:
    """The reason a "missing" panel gives (asserting it is one, titled exactly ``title``)."""
    full, texts = panel(fig, title)
    assert full == title and texts[0] == "missing" and len(texts) == 2, (full, texts)
    return texts[1]


def table_cells(fig: Figure) -> dict[tuple[str, str], tuple[str, str | None]]:
    """The grades table as drawn: (condition, level) → (grade shown, source mark or None), each text placed in
    the cell whose column header and row label are nearest to where it is drawn."""
    (ax,) = [ax for ax in fig.axes if ax.get_title(loc="left").startswith("Most probable grade")]
    placed = [(t.get_text(), *(float(v) for v in t.get_position())) for t in ax.texts]
    columns = {lv: x for lv in LEVELS for text, x, _ in placed if text == level_name(lv)}
    rows = {c: y for c in CONDITIONS for text, _, y in placed if text == CONDITION_SHORT[c]}
    assert len(columns) == len(LEVELS) and len(rows) == len(CONDITIONS)
    grades, marks = set(SEVERITY_LABELS.values()), set(SOURCE_MARKS.values())
    cells: dict[tuple[str, str], tuple[str, str | None]] = {}
    for text, x, y in placed:
        if text not in grades | marks:
            continue
        cell = (min(rows, key=lambda c: abs(rows[c] - y)), min(columns, key=lambda lv: abs(columns[lv] - x)))
        grade, mark = cells.get(cell, ("", None))
        cells[cell] = (text, mark) if text in grades else (grade, text)
    return cells


def expected_cells(result: StudyResult) -> dict[tuple[str, str], tuple[str, str | None]]:
    """Each cell's most probable grade and, where the main model did not grade it, its source's mark."""
    out = {}
    for c in CONDITIONS:
        for lv in LEVELS:
            probs = result.probabilities(c, lv)
            source = result.sources.get(row_id(result.study_id, c, lv), SOURCE_PRIOR)
            out[(c, lv)] = (SEVERITY_LABELS[SEVERITIES[int(np.argmax(probs))]], SOURCE_MARKS.get(source))
    return out


# --- tests -------------------------------------------------------------------------------------------------


def test_mask_on_the_stack_grid(synthetic: Synthetic):
    """The overlay samples labels through the affines: on the stack's grid it is exactly the k-th slice, and
    from the cohort's own (reversed) mask grid it is the same picture."""
    seg = synthetic.result.segmentation
    raw = LabelVolume(synthetic.raw_labels, synthetic.raw_affine, SEG_NAMES)
    for k in (0, synthetic.seg_stack.n_slices // 2):
        sl = synthetic.seg_stack.slices[k]
        np.testing.assert_array_equal(labels_on_slice(seg, sl), seg.labels[k])
        np.testing.assert_array_equal(labels_on_slice(raw, sl), seg.labels[k])
    assert set(synthetic.result.landmarks.found_levels) == set(LEVELS)


def test_report_of_a_synthetic_study(synthetic: Synthetic, tmp_path: Path):
    path = tmp_path / "out" / "report.png"
    assert write_report(path, synthetic.study, synthetic.result) == path
    img = assert_picture(path)
    # the grades table holds severity colours: some strongly red pixels (a severe cell) must be there
    rgb = img[..., :3]
    assert ((rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.35) & (rgb[..., 2] < 0.3)).sum() > 500


@pytest.mark.parametrize(
    "drop",
    [(SeriesKind.SAGITTAL_T2,), (SeriesKind.SAGITTAL_T1, SeriesKind.AXIAL_T2)],
    ids=["no-sagittal-t2", "no-t1-no-axial"],
)
def test_report_of_an_incomplete_study(synthetic: Synthetic, tmp_path: Path, drop: tuple[SeriesKind, ...]):
    """Each panel of a missing part says "missing" and why, in words that name the part; what is there is
    drawn (the Sagittal T2 slice with every level marked); the grades table still holds every grade and mark."""
    study = without(synthetic.study, *drop)
    if SeriesKind.SAGITTAL_T2 in drop:  # nothing to segment: no landmarks, projection or segmentation
        result = make_result(
            study,
            landmarks=None,
            segmentation=None,
            seg_stack=None,
            crops={},
            fallbacks=("no Sagittal T2/STIR: every row from the axial fallback or the prior",),
        )
        assert result.projection is None
    else:
        r = synthetic.result
        result = make_result(
            study, landmarks=r.landmarks, segmentation=r.segmentation, seg_stack=synthetic.seg_stack, crops={}
        )
    fig = written(tmp_path / "report.png", study, result)
    sid = study.study_id
    assert table_cells(fig) == expected_cells(result)  # the grades stand whatever is missing
    lines = header(fig)
    if SeriesKind.SAGITTAL_T2 in drop:
        assert any(line.startswith("landmarks: none ") for line in lines), lines
        assert f"fallback: {result.fallbacks[0]}" in lines
        assert (
            missing_panel(fig, "Sagittal T2/STIR")
            == f"no Sagittal T2/STIR series in study {sid}: nothing was segmented"
        )
        for side in ("right", "left"):
            why = missing_panel(fig, f"Sagittal T1 · {side} foramina")
            assert why == "no landmarks to project (no Sagittal T2/STIR segmentation)"
        for lv in LEVELS:
            assert (
                missing_panel(fig, f"{level_name(lv)} · Axial T2") == "no landmarks (no Sagittal T2/STIR segmentation)"
            )
    else:
        assert any(line.startswith("landmarks: 5/5 levels · anchor sacrum") for line in lines), lines
        assert "no fallbacks" in lines
        title, texts = panel(fig, "Sagittal T2/STIR")
        assert title.startswith(f"Sagittal T2/STIR · series {synthetic.seg_stack.series_id} · inst ")
        assert texts[: len(LEVELS)] == [level_name(lv) for lv in LEVELS]  # every level marked, by name
        for side in ("right", "left"):
            assert missing_panel(fig, f"Sagittal T1 · {side} foramina") == f"no Sagittal T1 series in study {sid}"
        for lv in LEVELS:
            assert missing_panel(fig, f"{level_name(lv)} · Axial T2") == "no Axial T2 series in the study"


def test_unreadable_pixels_get_a_panel(synthetic: Synthetic, tmp_path: Path):
    """An axial series whose files vanished after the scan: the axial panels say so, the rest is drawn."""
    gone = tmp_path / "gone.dcm"

    def broken(series):
        if series.kind is not SeriesKind.AXIAL_T2:
            return series
        stacks = tuple(
            dataclasses.replace(st, slices=tuple(dataclasses.replace(s, path=gone) for s in st.slices))
            for st in series.stacks
        )
        return dataclasses.replace(series, stacks=stacks)

    study = dataclasses.replace(synthetic.study, series=tuple(broken(s) for s in synthetic.study.series))
    result = dataclasses.replace(synthetic.result, projection=project_landmarks(synthetic.result.landmarks, study))
    out = tmp_path / "out"
    fig = written(out / "report.png", study, result)
    for lv in LEVELS:  # each level's axial panel names the file that could not be read
        why = missing_panel(fig, f"{level_name(lv)} · Axial T2")
        assert "".join(why.split()).startswith(f"pixelsunreadable:{gone}:unreadablefile:"), why
    # the sagittal panels are drawn: the slices they show, with every level marked
    title, texts = panel(fig, "Sagittal T2/STIR")
    assert title.startswith(f"Sagittal T2/STIR · series {synthetic.seg_stack.series_id} · inst ")
    assert texts[: len(LEVELS)] == [level_name(lv) for lv in LEVELS]
    for side in ("right", "left"):
        title, texts = panel(fig, f"Sagittal T1 · {side} foramina")
        assert " · inst " in title and texts[: len(LEVELS)] == [level_name(lv) for lv in LEVELS], (title, texts)
    assert table_cells(fig) == expected_cells(result)


def test_failed_render_leaves_no_file(synthetic: Synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """savefig dies half-way: no new file at ``path``, no temporary file, and an older report survives."""
    from matplotlib.figure import Figure

    def half_written(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG\r\n\x1a\npartial")
        raise RuntimeError("disk full (simulated)")

    study = without(synthetic.study, SeriesKind.SAGITTAL_T2)
    result = make_result(study, landmarks=None, segmentation=None, seg_stack=None, crops={})
    path = tmp_path / "fresh" / "report.png"
    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(path, study, result)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []

    old = tmp_path / "old" / "report.png"
    monkeypatch.undo()
    write_report(old, study, result)
    before = old.read_bytes()
    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(RuntimeError):
        write_report(old, study, result)
    assert old.read_bytes() == before
    assert [p.name for p in old.parent.iterdir()] == ["report.png"]


# --- the real study: landmarks from its spinal keypoints, crops at its subarticular keypoints ---------------


def real_result(study: Study, rsna: Path) -> StudyResult:
    """What ``predict`` would return for the real study if its landmarks and crops were the annotations and
    its probabilities the (smoothed) labels of train.csv: the report must show them where they belong."""
    kp = pd.read_csv(rsna / "train_label_coordinates.fix01b.csv", dtype={"study_id": str, "series_id": str})
    kp = kp[kp.study_id == study.study_id].copy()
    kp["condition"] = kp.condition.map(normalize_condition)
    kp["level"] = kp.level.map(normalize_level)
    spinal = kp[kp.condition == "spinal_canal_stenosis"]
    points = {
        r.level: study.get_series(r.series_id).pixel_to_world(int(r.instance_number), r.x, r.y)
        for r in spinal.itertuples()
    }
    landmarks = landmarks_from_points(points)
    crops = {}
    for r in kp[kp.condition.isin(SUBARTICULAR)].itertuples():
        series = study.get_series(r.series_id)
        stack, k = series.find_instance(int(r.instance_number))
        xyz = stack.slices[k].pixel_to_world(r.x, r.y)
        crops[row_id(study.study_id, r.condition, r.level)] = CropSource(
            r.condition,
            r.level,
            r.series_id,
            stack.index,
            int(r.instance_number),
            tuple(float(v) for v in xyz),
            float(r.x),
            float(r.y),
            0.0,
            r.condition.startswith("right"),
        )
    labels = pd.read_csv(rsna / "train.csv", dtype={"study_id": str}).set_index("study_id").loc[study.study_id]
    rows = []
    for c in CONDITIONS:
        for lv in LEVELS:
            p = np.full(3, 0.1)
            value = labels[f"{c}_{lv}"]
            if isinstance(value, str):
                p[SEVERITIES.index(normalize_severity(value))] = 0.8
            else:
                p[:] = 1 / 3
            rows.append({"row_id": row_id(study.study_id, c, lv), **dict(zip(SEVERITIES, p, strict=True))})
    projection = project_landmarks(landmarks, study)
    return StudyResult(
        study_id=study.study_id,
        folder=study.root,
        submission=pd.DataFrame(rows),
        sources={r["row_id"]: SOURCE_MODEL for r in rows},
        landmarks=landmarks,
        projection=projection,
        segmentation=None,
        segmentation_stack=None,
        crops=crops,
        series={
            k.value: tuple(s.series_id for s in study.series_of_kind(k)) for k in SeriesKind if study.series_of_kind(k)
        },
        fallbacks=(),
        warnings=projection.warnings,
        timings_s={},
        versions={"spineseg": "test"},
        bundle={"name": "annotations (train.csv + keypoints)"},
    )


@pytest.mark.real_data
def test_report_of_the_real_study(real_study_dir: Path, shared_data: Path, tmp_path: Path):
    """The real study's report against its annotations: the slices shown are the ones the annotators used (the
    axial ones within one slice), every level is marked, and the table holds train.csv's grades."""
    rsna = shared_data / "rsna2024"
    study = load_study(real_study_dir, rsna / "train_series_descriptions.csv")
    result = real_result(study, rsna)
    fig = written(tmp_path / "report.png", study, result)
    kp = pd.read_csv(rsna / "train_label_coordinates.fix01b.csv", dtype={"study_id": str, "series_id": str})
    kp = kp[kp.study_id == study.study_id]
    # the Sagittal T2 panel is the slice the annotators marked the canal on, with every level named
    (spinal,) = set(kp[kp.condition == "spinal_canal_stenosis"].instance_number)
    title, texts = panel(fig, "Sagittal T2/STIR")
    assert title.startswith(f"Sagittal T2/STIR · series 1792451510 · inst {spinal} ("), title
    assert texts[: len(LEVELS)] == [level_name(lv) for lv in LEVELS]
    # each Sagittal T1 panel: a slice the annotators used for that side's foramina, every level marked
    for side in ("right", "left"):
        used = set(kp[kp.condition == f"{side}_neural_foraminal_narrowing"].instance_number)
        title, texts = panel(fig, f"Sagittal T1 · {side} foramina · inst ")
        assert int(title.split(" · inst ")[1].split()[0]) in used, (title, used)
        assert [t.split(" (")[0] for t in texts[: len(LEVELS)]] == [level_name(lv) for lv in LEVELS]
    # each axial panel: its level's slice, within one of the annotators' subarticular one; the crop marks say
    # when the crop's slice is another
    shown = {}
    for lv in LEVELS:
        (annotated,) = set(kp[(kp.level == lv) & kp.condition.str.contains("subarticular")].instance_number)
        title, texts = panel(fig, f"{level_name(lv)} · Axial T2 · inst ")
        shown[lv] = int(title.split(" · inst ")[1].split()[0])
        assert abs(shown[lv] - annotated) <= 1, (lv, title, annotated)
        tags = ["L", "R"] if shown[lv] == annotated else [f"L (inst {annotated})", f"R (inst {annotated})"]
        assert texts[:2] == tags, (lv, texts)
    assert shown["l4_l5"] == 46  # the README's example: the annotators' L4/L5 subarticular slice
    # the grades table holds train.csv's grades, all from the model
    labels = pd.read_csv(rsna / "train.csv", dtype={"study_id": str}).set_index("study_id").loc[study.study_id]
    graded = {(c, lv): labels[f"{c}_{lv}"] for c in CONDITIONS for lv in LEVELS}
    blank = SEVERITY_LABELS["normal_mild"]  # a blank grade is drawn as the uniform row's first grade
    assert table_cells(fig) == {cell: (g if isinstance(g, str) else blank, None) for cell, g in graded.items()}
    assert "landmarks: 5/5 levels · anchor keypoints · source keypoints     grades: 25 model" in header(fig)
    assert "no fallbacks" in header(fig)


def test_report_content_right_slice_and_labels(synthetic: Synthetic):
    """What the report shows, not only that it is a picture: the Sagittal T2 panel is the slice through the
    canal points, with the five level names and the labels that slice holds; each axial panel its level."""
    from spine_seg.report.figure import render_report

    fig = render_report(synthetic.study, synthetic.result)
    titles = {ax.get_title(loc="left"): ax for ax in fig.axes}
    (t2_title,) = [t for t in titles if t.startswith("Sagittal T2/STIR")]
    stack = synthetic.seg_stack
    proj = synthetic.result.projection
    ks = [p.hit.k for p in proj.canal if (p.hit.series_id, p.hit.stack_index) == (stack.series_id, stack.index)]
    k = int(np.median(ks))
    assert f"inst {stack.slices[k].instance_number} ({k + 1}/{stack.n_slices})" in t2_title
    texts = [t.get_text() for t in titles[t2_title].texts]
    for lv in LEVELS:
        assert any(t.startswith(level_name(lv)) for t in texts), (lv, texts)
    labels_here = {int(v) for v in np.unique(synthetic.result.segmentation.labels[k]) if v}
    assert any(f"segmentation: {len(labels_here)} labels on this slice" in t for t in texts), texts
    axial = [t for t in titles if t.endswith("· Axial T2") or "· Axial T2" in t]
    assert [t.split(" · ")[0] for t in axial] == [level_name(lv) for lv in LEVELS]
