"""spine_seg.inference and ``spineseg predict``: end to end on a tiny real bundle, bad inputs, resume, atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from typer.testing import CliRunner

from spine_seg.core import geometry
from spine_seg.core.constants import CONDITIONS, LEVELS, SeriesKind
from spine_seg.core.labels import SEG_LABELS
from spine_seg.dicom import Stack, load_study
from spine_seg.inference.batch import check_submission, discover_studies, predict_batch
from spine_seg.inference.crop_plan import spinal_point, subarticular_points
from spine_seg.inference.outputs import ERRORS_CSV, write_study_outputs
from spine_seg.inference.predictor import Predictor, StageError
from spine_seg.landmarks import load_label_volume
from spine_seg.report.result import SOURCE_MODEL, SOURCE_PRIOR
from spine_seg.segmentation.predict import LabelVolume
from spine_seg_cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.slow
SEG_NAMES = {v: k for k, v in SEG_LABELS.items()}


class TrueMaskSegmenter:
    """Stands in for nnU-Net with the generator's true mask of the study (resampled onto the stack's grid),
    so the stages after segmentation are tested on correct landmarks; nnU-Net itself runs in the other tests."""

    def __init__(self, cohort: Path):
        self.cohort = cohort
        ov = pd.read_csv(cohort / "spider" / "overview.csv", dtype=str)
        self.mask_of = {
            r.synthetic_study_id: r.new_file_name for r in ov.itertuples() if r.new_file_name.endswith("_t2")
        }

    def predict_stack(self, stack: Stack, pixels: np.ndarray | None = None) -> LabelVolume:
        labels, affine = load_label_volume(
            self.cohort / "spider" / "masks" / f"{self.mask_of[stack.study_id]}.mha", spider=True
        )
        k, j, i = np.indices(stack.shape).reshape(3, -1)
        xyz = geometry.voxel_to_world(stack.affine, np.stack([i, j, k], axis=1))
        ijk = geometry.world_to_voxel(affine, xyz)
        out = ndimage.map_coordinates(labels, [ijk[:, 2], ijk[:, 1], ijk[:, 0]], order=0, mode="constant", cval=0)
        return LabelVolume(out.reshape(stack.shape), stack.affine, SEG_NAMES)


@pytest.fixture(scope="module")
def predictor(tiny_bundle) -> Predictor:
    return Predictor(tiny_bundle.bundle, device="cpu")


@pytest.fixture()
def true_mask_predictor(tiny_bundle, predictor: Predictor):
    saved = predictor.seg_model
    predictor.seg_model = TrueMaskSegmenter(tiny_bundle.cohort)
    try:
        yield predictor
    finally:
        predictor.seg_model = saved


def _series_csv(tiny_bundle, split: str = "train") -> Path:
    return tiny_bundle.cohort / f"{split}_series_descriptions.csv"


# ---------------------------------------------------------------------------------------------------------
# end to end through the CLI, with the bundle's real nnU-Net model


def test_predict_cli_end_to_end(tiny_bundle, tmp_path: Path):
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "predict",
            str(tiny_bundle.cohort / "test_images"),
            "--model",
            str(tiny_bundle.bundle),
            "--out",
            str(out),
            "--series-csv",
            str(_series_csv(tiny_bundle, "test")),
            "--device",
            "cpu",
            "--no-progress",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["done"] == 2 and summary["failed"] == 0 and summary["errors"] is None
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["row_id", "normal_mild", "moderate", "severe"] and len(sub) == 50
    assert check_submission(sub, list(tiny_bundle.test_ids)) == []
    for sid in tiny_bundle.test_ids:
        d = out / sid
        doc = json.loads((d / "result.json").read_text())
        assert doc["study_id"] == sid and len(doc["rows"]) == 25
        assert {"spineseg", "torch", "timm", "nnunetv2"} <= set(doc["versions"])
        assert doc["bundle"]["name"] == "tiny" and doc["segmentation"]["series_id"] in doc["series"]["Sagittal T2/STIR"]
        assert set(doc["probabilities"]) == set(LEVELS) and set(doc["probabilities"]["l4_l5"]) == set(CONDITIONS)
        assert all(r["source"] in ("model", "axial_fallback", "prior") for r in doc["rows"])
        assert set(doc["timings_s"]) >= {"ingest", "segment", "landmarks", "project", "grade"}
        assert doc["outputs"] == {
            "segmentation": "segmentation.nii.gz",
            "report": "report.png",
            "dicom_seg": "dicom/seg.dcm",
            "dicom_sr": "dicom/sr.dcm",
        }  # --dicom-out by default
        img = sitk.ReadImage(str(d / "segmentation.nii.gz"))
        stack = (
            load_study(tiny_bundle.cohort / "test_images" / sid).get_series(doc["segmentation"]["series_id"]).stacks[0]
        )
        assert sitk.GetArrayFromImage(img).shape == stack.shape
        assert np.allclose(img.GetOrigin(), stack.affine[:3, 3], atol=1e-3)
        assert (d / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_downstream_stages_on_true_masks(tiny_bundle, true_mask_predictor: Predictor, tmp_path: Path):
    """With correct masks every level is found, crops come from the right series, and rows are the model's."""
    sid = tiny_bundle.train_ids[0]
    folder = tiny_bundle.cohort / "train_images" / sid
    result = true_mask_predictor.predict(folder, _series_csv(tiny_bundle))
    truth = json.loads((tiny_bundle.cohort / "truth" / f"{sid}.json").read_text())["landmarks_lps_mm"]
    assert result.landmarks is not None and result.landmarks.found_levels == LEVELS
    for lm in result.landmarks.levels:
        assert np.linalg.norm(lm.disc_xyz - np.asarray(truth[lm.level]["disc_centre"])) < 3.0
    study = load_study(folder, _series_csv(tiny_bundle))
    kind_of = {s.series_id: s.kind for s in study.series}
    want = {"spinal": SeriesKind.SAGITTAL_T2, "neural": SeriesKind.SAGITTAL_T1, "subarticular": SeriesKind.AXIAL_T2}
    for rid, crop in result.crops.items():
        assert kind_of[crop.series_id] is next(k for key, k in want.items() if key in crop.condition)
        assert crop.flipped == crop.condition.startswith("right")
        assert result.sources[rid] == SOURCE_MODEL
    spinal = [r for r in result.crops if "spinal_canal" in r]
    assert len(spinal) == 5 and sum(s == SOURCE_MODEL for s in result.sources.values()) >= 15
    for lv in LEVELS:  # every subarticular row either has its crop or says why not
        for side in ("left", "right"):
            rid = f"{sid}_{side}_subarticular_stenosis_{lv}"
            assert rid in result.crops or any(f"{lv} subarticular" in f for f in result.fallbacks)
    assert np.allclose(result.submission[["normal_mild", "moderate", "severe"]].sum(axis=1), 1.0)
    written = write_study_outputs(result, tmp_path / sid)
    doc = json.loads(written["result"].read_text())
    assert set(doc["landmark_voxels"]) == set(LEVELS) and doc["landmarks"]["anchor"] == "sacrum"


def test_crop_points_geometry():
    normal = np.array([0.0, 0.0, 1.0])  # disc plane axial; +x in LPS is the patient's left
    pts = subarticular_points(np.array([1.0, 2.0, 3.0]), normal, offset_mm=7.0)
    assert np.allclose(pts["left"], [8.0, 2.0, 3.0]) and np.allclose(pts["right"], [-6.0, 2.0, 3.0])
    assert np.allclose(spinal_point(np.zeros(3), np.array([0.0, 10.0, 0.0]), 0.5), [0.0, 5.0, 0.0])


# ---------------------------------------------------------------------------------------------------------
# bad input: each gets its documented outcome


def test_empty_input_folder(tiny_bundle, tmp_path: Path):
    (tmp_path / "in").mkdir()
    res = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "in"),
            "--model",
            str(tiny_bundle.bundle),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 2 and "empty folder" in res.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(FileNotFoundError, match="empty folder"):
        discover_studies(tmp_path / "in")


def _copy_study(tiny_bundle, sid: str, dest: Path, split: str = "train") -> Path:
    return Path(shutil.copytree(tiny_bundle.cohort / f"{split}_images" / sid, dest))


def test_batch_with_bad_studies_goes_on(tiny_bundle, predictor: Predictor, tmp_path: Path):
    a, b = tiny_bundle.train_ids[:2]
    batch = tmp_path / "batch"
    good = _copy_study(tiny_bundle, a, batch / a)
    (batch / "notdicom" / "s1").mkdir(parents=True)
    (batch / "notdicom" / "s1" / "readme.txt").write_text("not an image")
    (batch / "notdicom" / "s1" / "x.dcm").write_bytes(b"\x00" * 300)
    mixed = _copy_study(tiny_bundle, a, batch / "mixed")
    other = load_study(tiny_bundle.cohort / "train_images" / b)
    shutil.copytree(other.series[0].stacks[0].slices[0].path.parent, mixed / "from_other_study")
    no_t2 = _copy_study(tiny_bundle, b, batch / "no_t2")
    for s in load_study(no_t2, _series_csv(tiny_bundle)).series_of_kind(SeriesKind.SAGITTAL_T2):
        shutil.rmtree(no_t2 / s.series_id)
    trunc = _copy_study(tiny_bundle, b, batch / "truncated")
    t1 = load_study(trunc, _series_csv(tiny_bundle)).series_of_kind(SeriesKind.SAGITTAL_T1)[0].stacks[0].slices[0].path
    t1.write_bytes(t1.read_bytes()[:-4000])

    out = tmp_path / "out"
    res = predict_batch(batch, None, out, series_csv=_series_csv(tiny_bundle), predictor=predictor, report=False)
    status = {o.study: o for o in res.outcomes}
    assert set(status) == {a, "notdicom", "mixed", "no_t2", "truncated"}
    assert status[a].status == "done" and status["no_t2"].status == "done" and status["truncated"].status == "done"
    assert status["notdicom"].status == "failed" and status["notdicom"].stage == "ingest"
    assert "no usable image series" in status["notdicom"].error
    assert status["mixed"].status == "failed" and "expected one study, found 2" in status["mixed"].error
    errors = pd.read_csv(out / ERRORS_CSV)
    assert set(errors.study) == {"notdicom", "mixed"} and set(errors.stage) == {"ingest"}
    assert (errors.submission_rows == "training prior").all()
    sub = pd.read_csv(res.submission)
    # no_t2 and truncated both hold study b: each is predicted under its folder name (issue 11), none is lost
    assert check_submission(sub, [a, "notdicom", "mixed", "no_t2", "truncated"]) == []
    assert "StudyInstanceUID" in (status["no_t2"].note or "")
    doc = json.loads((out / "no_t2" / "result.json").read_text())
    assert doc["landmarks"] is None and doc["segmentation"] is None
    assert all(r["source"] == SOURCE_PRIOR for r in doc["rows"])
    assert any("no Sagittal T2/STIR" in f for f in doc["fallbacks"])
    assert not (out / "no_t2" / "segmentation.nii.gz").exists()
    doc = json.loads((out / "truncated" / "result.json").read_text())
    assert any(t1.name in w and "truncated" in w.lower() for w in doc["warnings"]), doc["warnings"]
    assert good.is_dir() and not (out / "notdicom" / "result.json").exists()

    # the CLI: exit code 1 when a study failed, the summary names it
    res = runner.invoke(
        app,
        [
            "predict",
            str(batch),
            "--model",
            str(tiny_bundle.bundle),
            "--out",
            str(tmp_path / "out2"),
            "--series-csv",
            str(_series_csv(tiny_bundle)),
            "--no-progress",
            "--no-report",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 1 and "failed mixed (ingest)" in res.stderr and "errors.csv" in res.stderr


def test_axial_series_that_does_not_reach_a_level(tiny_bundle, true_mask_predictor: Predictor, tmp_path: Path):
    sid = tiny_bundle.train_ids[0]
    folder = _copy_study(tiny_bundle, sid, tmp_path / sid)
    first = true_mask_predictor.predict(folder, _series_csv(tiny_bundle))
    hit = first.projection.axial_at("l5_s1")
    assert hit is not None and hit.reached
    # remove every axial slice within 15 mm of L5/S1's canal point
    study = load_study(folder, _series_csv(tiny_bundle))
    canal = first.landmarks["l5_s1"].canal_xyz
    removed = 0
    for s in study.series_of_kind(SeriesKind.AXIAL_T2):
        for st in s.stacks:
            for sl in st.slices:
                if abs(sl.world_to_pixel(canal)[2]) < 15.0:
                    sl.path.unlink()
                    removed += 1
    assert removed
    result = true_mask_predictor.predict(folder, _series_csv(tiny_bundle))
    assert not result.projection.axial_at("l5_s1").reached
    assert any("l5_s1 subarticular: the Axial T2 does not reach it" in f for f in result.fallbacks)
    for side in ("left", "right"):
        rid = f"{sid}_{side}_subarticular_stenosis_l5_s1"
        assert rid not in result.crops and result.sources[rid] in ("axial_fallback", "prior")
    assert result.sources[f"{sid}_spinal_canal_stenosis_l5_s1"] == SOURCE_MODEL


# ---------------------------------------------------------------------------------------------------------
# resume and atomic writes


def test_resume_after_interrupted_batch(tiny_bundle, predictor: Predictor, tmp_path: Path):
    src = tiny_bundle.cohort / "test_images"
    out = tmp_path / "out"
    second = sorted(p.name for p in src.iterdir())[1]

    def interrupt(i: int, n: int, study: str, stage: str) -> None:
        if study == second and stage == "segment":
            raise KeyboardInterrupt  # as a Ctrl-C or a kill would, mid-study

    with pytest.raises(KeyboardInterrupt):
        predict_batch(
            src, None, out, series_csv=_series_csv(tiny_bundle, "test"), predictor=predictor, progress=interrupt
        )
    first = sorted(p.name for p in src.iterdir())[0]
    assert (out / first / "result.json").is_file() and not (out / second).exists()
    assert not [p for p in out.rglob(".*")]
    before = (out / first / "result.json").stat().st_mtime_ns

    res = predict_batch(src, None, out, series_csv=_series_csv(tiny_bundle, "test"), predictor=predictor, report=False)
    assert [o.status for o in res.outcomes] == ["resumed", "done"]
    assert (out / first / "result.json").stat().st_mtime_ns == before
    assert check_submission(pd.read_csv(res.submission), list(tiny_bundle.test_ids)) == []

    res = predict_batch(
        src, None, out, series_csv=_series_csv(tiny_bundle, "test"), predictor=predictor, resume=False, report=False
    )
    assert [o.status for o in res.outcomes] == ["done", "done"]


def test_stage_error_names_the_stage(tiny_bundle, predictor: Predictor, tmp_path: Path):
    (tmp_path / "s" / "a").mkdir(parents=True)
    (tmp_path / "s" / "a" / "junk.dcm").write_bytes(b"junk")
    with pytest.raises(StageError) as err:
        predictor.predict(tmp_path / "s")
    assert err.value.stage == "ingest" and str(tmp_path / "s") in str(err.value)


def test_python_api(tiny_bundle):
    import spine_seg

    result = spine_seg.predict_study(
        tiny_bundle.cohort / "test_images" / tiny_bundle.test_ids[0],
        tiny_bundle.bundle,
        series_csv=_series_csv(tiny_bundle, "test"),
        device="cpu",
    )
    assert isinstance(result, spine_seg.StudyResult) and result.study_id == tiny_bundle.test_ids[0]
    assert len(result.submission) == 25 and result.grade("spinal_canal_stenosis", "l4_l5") in (
        "normal_mild",
        "moderate",
        "severe",
    )


class SacrumBlindT2Segmenter(TrueMaskSegmenter):
    """The true mask, but the first stack segmented (the Sagittal T2) has lost its sacrum: its level names
    are unsure, as on a real T2 where the network missed the sacrum."""

    def __init__(self, cohort: Path):
        super().__init__(cohort)
        self.calls = 0

    def predict_stack(self, stack: Stack, pixels: np.ndarray | None = None) -> LabelVolume:
        lv = super().predict_stack(stack, pixels)
        self.calls += 1
        if self.calls > 1:
            return lv
        labels = np.asarray(lv.labels).copy()
        labels[labels == SEG_LABELS["sacrum"]] = 0
        return LabelVolume(labels, lv.affine, SEG_NAMES)


def test_unsure_t2_names_are_cross_checked_on_the_t1(tiny_bundle, predictor: Predictor):
    sid = tiny_bundle.train_ids[0]
    folder = tiny_bundle.cohort / "train_images" / sid
    saved, saved_mode = predictor.seg_model, predictor.cross_check
    try:
        predictor.cross_check = "never"
        predictor.seg_model = SacrumBlindT2Segmenter(tiny_bundle.cohort)
        alone = predictor.predict(folder, _series_csv(tiny_bundle))
        assert alone.landmarks.unsure and predictor.seg_model.calls == 1
        predictor.cross_check = "unsure"
        predictor.seg_model = SacrumBlindT2Segmenter(tiny_bundle.cohort)
        checked = predictor.predict(folder, _series_csv(tiny_bundle))
    finally:
        predictor.seg_model, predictor.cross_check = saved, saved_mode
    assert predictor is not None and checked.landmarks is not None
    lms = checked.landmarks
    assert not lms.unsure and lms.anchor == "sacrum (Sagittal T1)" and lms.found_levels == LEVELS
    assert [lm.xyz_lps_mm for lm in lms.levels] == [lm.xyz_lps_mm for lm in alone.landmarks.levels]
    assert all(lm.confidence >= 0.8 for lm in lms.levels)


def test_unknown_cross_check_lists_the_choices(tiny_bundle):
    with pytest.raises(ValueError, match="valid: auto, always, unsure, never"):
        Predictor(tiny_bundle.bundle, device="cpu", cross_check="sometimes")


def test_unknown_mirroring_lists_the_choices_and_a_chosen_one_reaches_the_model(tiny_bundle):
    with pytest.raises(ValueError, match="valid: superior_inferior, all, none"):
        Predictor(tiny_bundle.bundle, device="cpu", mirroring="sideways")
    assert Predictor(tiny_bundle.bundle, device="cpu", mirroring="none").seg_model.mirroring == "none"
