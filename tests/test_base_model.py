"""Base model: bodies-only masks in the structure scheme, the SpineBase/VB2 converters, the recipe's export
and the errors that name the build command (spine_seg.segmentation.base_model, nnunet_tasks 506/510)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spine_seg.core.errors import UsageError
from spine_seg.core.labels import BASE_IGNORE, BASE_LABELS, SEG_LABELS, label_scheme_of
from spine_seg.segmentation import base_model as bm
from spine_seg_nnunet_tasks.common import bodies_to_base_labels, thick_slices
from spine_seg_nnunet_tasks.Dataset506_VB2 import base_case, load_vb2, ordered_bodies
from spine_seg_nnunet_tasks.Dataset510_SpineBase import convert_spine_base, real_folds

V, D = BASE_LABELS["vertebra"], BASE_LABELS["disc"]


def _two_bodies(shape=(20, 120, 80)) -> list[np.ndarray]:
    """Two box bodies 10 voxels apart along j (feet), with a concave lower endplate on the upper one."""
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    a[5:15, 20:50, 20:50] = True
    a[5:15, 48:50, 30:40] = False  # concave endplate: the disc is taller in the middle
    b[5:15, 60:90, 20:50] = True
    return [a, b]


def test_pseudo_disc_fills_the_space_between_facing_endplates():
    labels = bodies_to_base_labels(_two_bodies(), 1.0)
    assert (labels[5:15, 50:60, 20:50] == D).all()
    assert (labels[5:15, 48:50, 30:40] == D).all()  # follows the concavity
    assert (labels[:, 20:50][:, :, 20:50][5:15] == V).sum() > 0
    # rim around the disc, the column above the top body and below the lowest, the canal band: ignored
    assert labels[10, 55, 19] == BASE_IGNORE or labels[10, 55, 18] == BASE_IGNORE
    assert labels[10, 5, 30] == BASE_IGNORE and labels[10, 110, 30] == BASE_IGNORE
    assert labels[10, 40, 60] == BASE_IGNORE  # behind the bodies near the midline: canal, unknown
    assert labels[10, 40, 5] == 0  # in front of the bodies: background


def test_bodies_far_apart_get_no_disc():
    a, b = _two_bodies()
    b = np.roll(b, 30, axis=1)  # 40 mm gap: a missing body, not a disc
    labels = bodies_to_base_labels([a, b], 1.0)
    assert not (labels == D).any()


def test_thick_slices_average_the_image_and_keep_the_middle_labels():
    img = np.arange(12, dtype=float)[:, None, None] * np.ones((12, 2, 2))
    lab = np.arange(12, dtype=np.uint8)[:, None, None] * np.ones((12, 2, 2), np.uint8)
    ti, tl = thick_slices(img, lab, 4, 1)
    assert ti.shape == (2, 2, 2) and ti[0, 0, 0] == pytest.approx(2.5) and tl[0, 0, 0] == 3
    with pytest.raises(ValueError, match="thickness"):
        thick_slices(img, lab, 0)


def test_label_schemes_are_told_apart():
    assert label_scheme_of({**BASE_LABELS, "ignore": BASE_IGNORE}) == "base"
    assert label_scheme_of(dict(SEG_LABELS)) == "levels"
    assert label_scheme_of({"background": 0, "L1": 1}) == "levels"
    with pytest.raises(ValueError, match="valid"):
        label_scheme_of({"background": 0, "kidney": 1})


def test_real_folds_alternate_within_each_source():
    folds = real_folds(["vb2_02", "vb2_04", "vb2_05", "myo_01", "myo_02"], 2)
    assert folds == {"vb2_02": 0, "vb2_04": 1, "vb2_05": 0, "myo_01": 0, "myo_02": 1}


@pytest.mark.real_data
def test_vb2_bodies_named_by_height_not_by_label(shared_data: Path):
    image, gt = load_vb2(shared_data / "vb2" / "13.mat")
    assert image.shape[2] == gt.shape[2]
    bodies = ordered_bodies(gt)
    rows = [np.nonzero(gt == v)[0].mean() for _, v in bodies]
    assert [n for n, _ in bodies] == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert rows == sorted(rows)
    img, lab = base_case(image, gt, bodies, 4)
    assert img.dtype == np.uint8 and img.shape == lab.shape and img.shape[0] == image.shape[2] // 4
    counts = np.bincount(lab.ravel(), minlength=BASE_IGNORE + 1)
    assert counts[V] > 0 and counts[D] > 0 and counts[BASE_IGNORE] > 0
    assert counts[BASE_LABELS["sacrum"]] == 0 and counts[BASE_LABELS["spinal_canal"]] == 0


@pytest.mark.real_data
def test_spine_base_dataset_mixes_phantoms_and_real_volumes(tmp_path: Path, shared_data: Path):
    data = tmp_path / "data"
    (data / "vb2").mkdir(parents=True)
    (data / "myosegmentum").mkdir()
    for name in ("02.mat", "04.mat"):
        (data / "vb2" / name).symlink_to(shared_data / "vb2" / name)
    (data / "myosegmentum" / "01.mat").symlink_to(shared_data / "myosegmentum" / "01.mat")
    out = convert_spine_base(data, tmp_path / "raw", n_synthetic=2)
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {**BASE_LABELS, "ignore": BASE_IGNORE}
    assert ds["numTraining"] == 5 and ds["overwrite_image_reader_writer"] == "NibabelIO"
    splits = json.loads((out / "splits_final.json").read_text())
    folds = json.loads((out / "real_folds.json").read_text())
    assert folds == {"vb2_02": 0, "vb2_04": 1, "myo_01": 0}
    for f, split in enumerate(splits):
        assert not set(split["train"]) & set(split["val"])
        held = {c for c, k in folds.items() if k == f}
        assert held <= set(split["val"]) and not held & set(split["train"])
        assert {"synth_0000", "synth_0001"} <= set(split["train"]) | set(split["val"])


def _fake_result_folder(root: Path) -> Path:
    folder = root / "nnUNetTrainerAdam1en3__nnUNetPlans_CPUBudget__2d"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text(json.dumps({"labels": {**BASE_LABELS, "ignore": BASE_IGNORE}}))
    torch.save(
        {
            "network_weights": {"w": torch.ones(3, 3), "n": torch.tensor(2)},
            "optimizer_state": {"big": torch.ones(100)},
            "trainer_name": "nnUNetTrainerAdam1en3",
        },
        folder / "fold_0" / "checkpoint_final.pth",
    )
    return folder


def test_export_keeps_float16_weights_and_drops_the_optimizer(tmp_path: Path):
    out = bm.export_weights(_fake_result_folder(tmp_path / "res"), tmp_path / "model", ["0"])
    ckpt = torch.load(out / "fold_0" / "checkpoint_final.pth", weights_only=False)
    assert "optimizer_state" not in ckpt and ckpt["trainer_name"] == "nnUNetTrainerAdam1en3"
    assert ckpt["network_weights"]["w"].dtype == torch.float16 and ckpt["network_weights"]["n"].dtype == torch.int64
    with pytest.raises(FileNotFoundError, match="fold 1"):
        bm.export_weights(_fake_result_folder(tmp_path / "res2"), tmp_path / "model2", ["1"])


def test_base_model_folder_and_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(FileNotFoundError, match="spineseg bundle build-base"):
        bm.require_base_model(tmp_path)
    monkeypatch.setattr(bm, "shipped_base_model", lambda: None)  # a package without the shipped model
    with pytest.raises(FileNotFoundError, match="build-base --out DIR --budget-min 25 --refine-min 25"):
        bm.require_base_model()
    monkeypatch.undo()
    folder = _fake_result_folder(tmp_path)
    (tmp_path / bm.MANIFEST_NAME).write_text(json.dumps({"folder": folder.name}))
    assert bm.require_base_model(tmp_path) == tmp_path
    assert bm.model_folds(tmp_path) == ["0"] and bm.nnunet_folder(tmp_path) == folder


def test_build_base_refuses_a_used_folder_and_a_bad_budget(tmp_path: Path):
    (tmp_path / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        bm.build_base(tmp_path, None)
    with pytest.raises(ValueError, match="budget"):
        bm.build_base(tmp_path / "new", None, budget_min=0)
    with pytest.raises(UsageError, match="pseudo_labels_from paints freshly converted"):
        bm.build_base(tmp_path / "new", None, pseudo_labels_from=tmp_path, keep_raw=True)
    with pytest.raises(FileNotFoundError, match="not a base segmentation model"):
        bm.build_base(tmp_path / "new", None, pseudo_labels_from=tmp_path / "nowhere")


def _fake_builds(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """``build_base`` replaced by one that records its call and writes a manifest as the real one does."""
    calls: list[dict] = []

    def fake(out, data_root, **kw):
        calls.append({"out": Path(out), **kw})
        out = Path(out)
        out.mkdir(parents=True)
        command = f"spineseg bundle build-base --budget-min {kw['budget_min']:g}"
        manifest = {"recipe": {"command": command}, "folds": [], "seconds": {"total": 60.0 * len(calls)}}
        (out / bm.MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
        return bm.BaseBuild(out=out, result_folder=out / "model", manifest=manifest)

    monkeypatch.setattr(bm, "build_base", fake)
    return calls


def test_the_refined_recipe_is_two_stages_in_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = _fake_builds(monkeypatch)
    out = tmp_path / "base"
    result = bm.build_base_refined(out, None, refine_min=40, budget_min=48, seed=3)
    first, second = calls
    stage1 = tmp_path / "base.stage1"
    assert first["out"] == stage1 and first["budget_min"] == 48 and first["seed"] == 3
    assert "init_from" not in first and "pseudo_labels_from" not in first
    assert second["out"] == out and second["budget_min"] == 40 and second["seed"] == 3
    assert second["init_from"] == stage1 and second["pseudo_labels_from"] == stage1
    assert tuple(second["pseudo_labels"]) == ("sacrum", "canal") and second["folds"] == ("0", "1")
    on_disk = json.loads((out / bm.MANIFEST_NAME).read_text(encoding="utf-8"))
    assert on_disk == result.manifest
    assert on_disk["recipe"]["command"].endswith("--budget-min 48 --refine-min 40 --pseudo-labels sacrum,canal")
    assert on_disk["recipe"]["stage_two_command"] == "spineseg bundle build-base --budget-min 40"
    assert on_disk["seconds"] == {"total": 180.0, "stage_one": 60.0, "stage_two": 120.0}


def test_the_refined_recipe_refuses_bad_options_before_any_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = _fake_builds(monkeypatch)
    out = tmp_path / "base"
    with pytest.raises(ValueError, match="refine_min must be positive"):
        bm.build_base_refined(out, None, refine_min=0)
    with pytest.raises(UsageError, match="drop pseudo_labels_from"):
        bm.build_base_refined(out, None, refine_min=5, pseudo_labels_from=tmp_path)
    with pytest.raises(UsageError, match="folds 0 and 1"):
        bm.build_base_refined(out, None, refine_min=5, folds=("all",))
    with pytest.raises(UsageError, match="valid: sacrum, canal"):
        bm.build_base_refined(out, None, refine_min=5, pseudo_labels=("discs",))
    (tmp_path / "base.stage1").mkdir()
    (tmp_path / "base.stage1" / "x").write_text("")
    with pytest.raises(FileExistsError, match="base.stage1: exists and is not empty"):
        bm.build_base_refined(out, None, refine_min=5)
    assert calls == []


def test_bundles_accept_the_structure_scheme_only_whole():
    from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
    from spine_seg.inference.bundle import BundleError, check_manifest

    def manifest(labels: dict) -> dict:
        return {
            "format": "spineseg-bundle",
            "format_version": 1,
            "labels": {"conditions": list(CONDITIONS), "levels": list(LEVELS), "severities": list(SEVERITIES)},
            "segmentation": {"labels": labels},
            "grading": {"ensemble": "grading/ensemble.json"},
        }

    check_manifest(manifest({**BASE_LABELS, "ignore": BASE_IGNORE}), "m")
    with pytest.raises(BundleError, match="unknown names"):
        check_manifest(manifest({**BASE_LABELS, "kidney": 9}), "m")


def test_cli_build_base_checks_its_options_before_work(tmp_path: Path):
    from typer.testing import CliRunner

    from spine_seg_cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["bundle", "build-base", "--out", str(tmp_path / "m"), "--folds", "2"])
    assert res.exit_code == 2 and "valid: 0, 1, all" in res.output
    res = runner.invoke(app, ["bundle", "build-base", "--out", str(tmp_path / "m"), "--data", str(tmp_path)])
    assert res.exit_code == 2 and "vb2" in res.output
    res = runner.invoke(
        app, ["bundle", "build-base", "--out", str(tmp_path / "m"), "--no-real", "--pseudo-labels-from", str(tmp_path)]
    )
    assert res.exit_code == 2 and "not a base segmentation model" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app,
        ["bundle", "build-base", "--out", str(tmp_path / "m"), "--no-real"]
        + ["--pseudo-labels-from", str(tmp_path), "--pseudo-labels", "sacrum,discs"],
    )
    assert res.exit_code == 2 and "unknown pseudo-label kind" in res.output and "valid: sacrum, canal" in res.output
    res = runner.invoke(
        app,
        ["bundle", "build-base", "--out", str(tmp_path / "m"), "--no-real"]
        + ["--refine-min", "5", "--pseudo-labels-from", str(tmp_path)],
    )
    assert res.exit_code == 2 and "drop --pseudo-labels-from" in res.output
    assert not (tmp_path / "m").exists()


def test_predict_without_model_runs_the_base_model_alone_and_says_where_rows_come_from(
    tmp_path: Path, synthetic_study: Path, monkeypatch: pytest.MonkeyPatch
):
    """No --model: the shipped base model's levels and measurements, no submission.csv, and the line that says
    the competition rows were not produced names the command that builds a grading bundle. A package without
    the base model refuses before writing anything, naming the command that builds one."""
    from typer.testing import CliRunner

    from spine_seg_cli.main import app

    out = tmp_path / "out"
    args = ["predict", str(synthetic_study), "--out", str(out), "--no-progress", "--no-report", "--no-dicom-out"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "competition rows: not produced" in res.output and "spineseg demo" in res.output
    assert not (out / "submission.csv").exists()
    doc = json.loads((out / synthetic_study.name / "result.json").read_text())
    assert doc["competition_rows"] is False and doc["rows"] == [] and "measurements" in doc
    assert any("competition rows were not produced" in f for f in doc["fallbacks"])
    monkeypatch.setattr(bm, "shipped_base_model", lambda: None)  # a package without the shipped model
    res = CliRunner().invoke(app, [*args[:3], str(tmp_path / "out2"), *args[4:]])
    assert res.exit_code == 2 and "spineseg bundle build-base" in res.output
    assert not (tmp_path / "out2").exists()


def test_shipped_base_model_is_complete_and_small():
    base = bm.shipped_base_model()
    assert base is not None, "spine_seg/models/base_seg is missing from this install"
    manifest = bm.read_manifest(base)
    assert manifest["label_scheme"] == "base" and bm.model_folds(base) == ["0", "1"]
    assert manifest["recipe"]["command"].startswith("spineseg bundle build-base")
    assert set(manifest["data"]["cases"]) == {"synthetic", "vb2", "myosegmentum"}
    assert all(f["epochs"] >= 1 and f["iterations"] >= 250 for f in manifest["folds"])
    size = sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
    assert size < 25 * 2**20
    ds = json.loads((bm.nnunet_folder(base) / "dataset.json").read_text())
    assert label_scheme_of(ds["labels"]) == "base"


@pytest.mark.real_data
@pytest.mark.slow
def test_shipped_base_model_names_the_real_study_levels(real_study_dir: Path, shared_data: Path):
    """RSNA 100206310 was never trained on: every level named right and sure, canal points on the keypoints."""
    import pandas as pd

    from spine_seg.core.constants import LEVELS
    from spine_seg.dicom import load_study
    from spine_seg.inference.predictor import _segmentation_stack
    from spine_seg.landmarks.structures import landmarks_from_label_volume
    from spine_seg.segmentation.predict import SegmentationModel

    base = bm.shipped_base_model()
    model = SegmentationModel.from_folder(bm.nnunet_folder(base), fold=bm.model_folds(base), device="cpu")
    study = load_study(real_study_dir, shared_data / "rsna2024" / "train_series_descriptions.csv")
    series, stack = _segmentation_stack(study)
    ls = landmarks_from_label_volume(model.predict_stack(stack))
    assert ls.found_levels == LEVELS and ls.anchor == "sacrum" and not ls.unsure
    kp = pd.read_csv(shared_data / "rsna2024" / "train_label_coordinates.fix01b.csv")
    kp = kp[(kp.study_id == int(study.study_id)) & (kp.condition == "spinal_canal_stenosis")]
    errors = []
    for row in kp.itertuples():
        truth = series.pixel_to_world(instance_number=int(row.instance_number), x_px=float(row.x), y_px=float(row.y))
        errors.append(float(np.linalg.norm(ls[row.level].canal_xyz - truth)))
        assert ls[row.level].confidence >= 0.5
    assert len(errors) == 5 and np.median(errors) <= 4.0 and max(errors) <= 8.0


def test_warm_start_names_the_folds_a_model_has():
    from spine_seg.segmentation.base_model import _warm_starts, shipped_base_model

    shipped = shipped_base_model()
    assert shipped is not None
    starts = _warm_starts(shipped, ("0", "1"))
    assert sorted(starts) == ["0", "1"] and all(p.is_file() for p in starts.values())
    with pytest.raises(FileNotFoundError, match="no fold all to start from; it has: 0, 1"):
        _warm_starts(shipped, ("all",))
    assert _warm_starts(None, ("0",)) == {}


def test_train_fold_child_trains_as_the_parent_would(monkeypatch: pytest.MonkeyPatch):
    """The ``train-fold`` child parses its strings into the same call the in-process path makes."""
    import spine_seg.segmentation.train as train_mod

    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: calls.append((a, k)))
    bm._train_fold_main(["1", "nnUNetTrainerAdam1en3", "cpu", "7", "1.5", "1", "/x/fold_1/checkpoint_final.pth"])
    bm._train_fold("1", "nnUNetTrainerAdam1en3", "cpu", 7, 1.5, True, "/x/fold_1/checkpoint_final.pth")
    assert len(calls) == 2 and calls[0] == calls[1]
    args, kwargs = calls[0]
    assert args == (bm.BASE_DATASET_ID, bm.BASE_CONFIGURATION, "1", "nnUNetTrainerAdam1en3", "cpu")
    assert kwargs["epochs"] == 7 and kwargs["time_budget_s"] == 90.0 and kwargs["validate"] is True
    assert kwargs["plans"] == bm.BASE_PLANS and kwargs["init_weights"] == "/x/fold_1/checkpoint_final.pth"
