"""nnU-Net environment, CLI argument errors, and a CPU train-and-predict smoke test on a synthetic cohort.

Every test gets its own SPINESEG_HOME under tmp_path with the user's nnU-Net variables removed, and the
process environment restored afterwards; nothing is written outside tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spine_seg.segmentation import nnunet_env
from spine_seg.segmentation import train as seg_train
from spine_seg.segmentation.predict import LabelVolume
from spine_seg_cli.main import app

runner = CliRunner()
MANAGED = (nnunet_env.HOME_VAR, *nnunet_env.PATH_VARS, nnunet_env.EXT_TRAINER_VAR)


@pytest.fixture()
def seg_home(tmp_path: Path):
    """A fresh SPINESEG_HOME; the user's nnU-Net paths removed; os.environ restored after the test."""
    saved = dict(os.environ)
    for var in MANAGED:
        os.environ.pop(var, None)
    home = tmp_path / "spineseg_home"
    os.environ[nnunet_env.HOME_VAR] = str(home)
    try:
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------------------------------------------------
# nnunet_env


def test_resolve_defaults_from_spineseg_home(tmp_path: Path):
    env = nnunet_env.resolve({"SPINESEG_HOME": str(tmp_path)}, cpus=2)
    assert env.raw == tmp_path / "nnUNet_raw"
    assert env.preprocessed == tmp_path / "nnUNet_preprocessed"
    assert env.results == tmp_path / "nnUNet_results"
    assert env.ext_trainer == str(nnunet_env.trainers_dir())
    assert (nnunet_env.trainers_dir() / "spineseg_trainers.py").is_file()
    assert (env.n_proc, env.n_proc_da) == ("1", "0")  # small machine: one worker, augmentation in-process
    assert env.source["nnUNet_raw"] == "SPINESEG_HOME"


def test_resolve_default_home_is_dot_spineseg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    env = nnunet_env.resolve({}, cpus=16)
    assert env.home == tmp_path / ".spineseg" and env.results == tmp_path / ".spineseg" / "nnUNet_results"
    assert (env.n_proc, env.n_proc_da) == ("8", None)  # large machine: nnU-Net's own augmentation workers


def test_user_variables_win(tmp_path: Path):
    theirs = str(tmp_path / "their_trainers")
    env = nnunet_env.resolve(
        {
            "SPINESEG_HOME": str(tmp_path / "h"),
            "nnUNet_raw": str(tmp_path / "raw"),
            "nnUNet_extTrainer": theirs,
            "nnUNet_def_n_proc": "3",
            "nnUNet_n_proc_DA": "5",
        },
        cpus=2,
    )
    assert env.raw == tmp_path / "raw" and env.source["nnUNet_raw"] == "user"
    assert env.preprocessed == tmp_path / "h" / "nnUNet_preprocessed"
    assert env.ext_trainer.split(os.pathsep) == [theirs, str(nnunet_env.trainers_dir())]  # theirs kept, ours added
    assert (env.n_proc, env.n_proc_da) == ("3", "5")
    again = nnunet_env.resolve({"nnUNet_extTrainer": env.ext_trainer}, cpus=2)
    assert again.ext_trainer == env.ext_trainer  # not appended twice


def test_export_lines_for_nnunet_commands(seg_home: Path, capsys: pytest.CaptureFixture[str]):
    nnunet_env.main()
    out = capsys.readouterr().out
    assert f"export nnUNet_results={seg_home / 'nnUNet_results'}" in out and "export nnUNet_extTrainer=" in out


def test_apply_sets_environment_and_creates_folders(seg_home: Path):
    env = nnunet_env.apply()
    for var in nnunet_env.PATH_VARS:
        assert os.environ[var] == str(seg_home / var) and (seg_home / var).is_dir()
    assert os.environ["nnUNet_extTrainer"] == env.ext_trainer


def test_apply_without_requirements_creates_nothing(seg_home: Path):
    nnunet_env.apply(require=())
    assert not seg_home.exists()


def test_unwritable_home_names_the_variable(seg_home: Path):
    seg_home.parent.mkdir(parents=True, exist_ok=True)
    seg_home.write_text("a file, not a folder")
    with pytest.raises(nnunet_env.NnunetEnvError, match=r"nnUNet_raw folder .* set SPINESEG_HOME \(or nnUNet_raw\)"):
        nnunet_env.apply()


def test_unwritable_user_path_names_that_variable(seg_home: Path, tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    os.environ["nnUNet_results"] = str(blocker / "results")
    with pytest.raises(nnunet_env.NnunetEnvError, match="set nnUNet_results to a writable folder"):
        nnunet_env.apply()


def _python(code: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_apply_before_nnunet_import_in_a_fresh_process(tmp_path: Path):
    """nnunetv2 reads nnUNet_def_n_proc (and, before 2.8, the paths) at import: apply() must come first."""
    code = (
        "import json, sys\n"
        "import spine_seg.segmentation.train, spine_seg.segmentation.predict, spine_seg_cli.seg\n"
        "early = sorted(m for m in ('nnunetv2', 'torch') if m in sys.modules)\n"
        "from spine_seg.segmentation import nnunet_env\n"
        "env = nnunet_env.apply()\n"
        "import nnunetv2.paths as p, nnunetv2.configuration as c\n"
        "from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA\n"
        "print(json.dumps({'early': early, 'raw': str(p.nnUNet_raw), 'results': str(p.nnUNet_results),\n"
        "  'ext': str(p.nnUNet_extTrainer), 'n_proc': c.default_num_processes, 'want_n_proc': int(env.n_proc),\n"
        "  'da': get_allowed_n_proc_DA(), 'want_da': env.n_proc_da}))\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in MANAGED and not k.startswith("nnUNet_")}
    got = _python(code, {**base, "SPINESEG_HOME": str(tmp_path / "h")})
    assert got["early"] == []  # importing spineseg's segmentation modules imports neither nnU-Net nor torch
    assert got["raw"] == str(tmp_path / "h" / "nnUNet_raw") and got["results"] == str(tmp_path / "h" / "nnUNet_results")
    assert str(nnunet_env.trainers_dir()) in got["ext"].split(os.pathsep)
    assert got["n_proc"] == got["want_n_proc"]
    if got["want_da"] is not None:
        assert got["da"] == int(got["want_da"])
    got = _python(
        code,
        {**base, "SPINESEG_HOME": str(tmp_path / "h"), "nnUNet_raw": str(tmp_path / "mine"), "nnUNet_def_n_proc": "3"},
    )
    assert got["raw"] == str(tmp_path / "mine") and got["n_proc"] == 3


def test_trainer_names_and_plans_agree():
    import spine_seg_nnunet_tasks.trainers as trainers

    assert set(trainers.TRAINER_NAMES) == set(seg_train.SPINESEG_TRAINERS)
    assert trainers.CPU_PLANS == seg_train.CPU_PLANS
    src = (nnunet_env.trainers_dir() / "spineseg_trainers.py").read_text(encoding="utf-8")
    for name in trainers.TRAINER_NAMES:
        assert f"class {name}(nnUNetTrainer)" in src
    assert "SPINESEG_EPOCHS" in src and trainers.EPOCHS_VAR == "SPINESEG_EPOCHS"


def test_label_volume_is_read_only_and_saves_geometry(tmp_path: Path):
    import SimpleITK as sitk

    from spine_seg.core import geometry

    labels = np.zeros((3, 5, 4), np.uint8)
    labels[1, 2:4, 1:3] = 7
    affine = geometry.affine_from_headers((10.0, -20.0, 30.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (0.8, 0.7), 4.0)
    lv = LabelVolume(labels, affine, {0: "background", 7: "disc_l1_l2"})
    assert lv.present() == ("disc_l1_l2",) and lv.voxel_counts()["disc_l1_l2"] == 4
    assert lv.spacing_mm == pytest.approx((0.7, 0.8, 4.0))
    with pytest.raises(ValueError):
        lv.labels[0, 0, 0] = 1
    img = sitk.ReadImage(str(lv.save(tmp_path / "m.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(img), labels)
    assert img.GetOrigin() == pytest.approx((10.0, -20.0, 30.0))
    assert img.TransformIndexToPhysicalPoint((3, 4, 2)) == pytest.approx(affine[:3] @ [3, 4, 2, 1])


def test_mirroring_modes_and_the_superior_inferior_axis():
    from spine_seg.core import geometry
    from spine_seg.core.errors import UsageError
    from spine_seg.segmentation.predict import mirroring_mode, superior_inferior_axis

    assert mirroring_mode(None) == "superior_inferior"
    assert mirroring_mode(True) == "all" and mirroring_mode(False) == "none"
    with pytest.raises(UsageError, match="unknown mirroring 'sideways'; valid: superior_inferior, all, none"):
        mirroring_mode("sideways")
    # sagittal: rows run head to feet (j); axial: columns run left to right, rows front to back, slices S–I (k)
    sagittal = geometry.affine_from_headers((0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (0.7, 0.7), 4.0)
    axial = geometry.affine_from_headers((0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.7, 0.7), 4.0)
    assert superior_inferior_axis(sagittal) == 1 and superior_inferior_axis(axial) == 0
    # a sagittal image stored on its side: the columns run head to feet
    assert superior_inferior_axis(geometry.affine_from_headers((0, 0, 0), (0, 0, -1, 0, 1, 0), (0.7, 0.7), 4)) == 2


class _FakeNnunetPredictor:
    """What :meth:`SegmentationModel._set_mirror_axes` reads and writes of nnU-Net's predictor."""

    def __init__(self, transpose: list[int], patch: list[int]) -> None:
        self.allowed_mirroring_axes = tuple(range(len(patch)))
        self.use_mirroring = True
        self.plans_manager = type("P", (), {"transpose_forward": transpose})()
        self.configuration_manager = type("C", (), {"patch_size": patch})()


@pytest.mark.parametrize(
    "transpose, patch, si_axis, mode, axes",
    [
        ([0, 1, 2], [192, 192], 1, "superior_inferior", (0,)),  # 2d sagittal: input axis 0 is the rows
        ([0, 1, 2], [192, 192], 2, "superior_inferior", (1,)),  # a sagittal image on its side
        ([0, 1, 2], [192, 192], 0, "superior_inferior", ()),  # axial 2d: S–I is the slice axis, nothing to flip
        ([2, 0, 1], [192, 192], 1, "superior_inferior", (1,)),  # a plans transpose moves the rows
        ([0, 1, 2], [64, 128, 128], 1, "superior_inferior", (1,)),  # 3d: every array axis is an input axis
        ([0, 1, 2], [192, 192], 1, "all", (0, 1)),
    ],
)
def test_mirror_axes_follow_the_patient_not_the_array(transpose, patch, si_axis, mode, axes):
    from spine_seg.segmentation.predict import SegmentationModel

    fake = _FakeNnunetPredictor(transpose, patch)
    model = SegmentationModel(fake, Path("."), (0,), "cpu", mode, {0: "background"}, 1)
    model._set_mirror_axes(si_axis)
    assert fake.allowed_mirroring_axes == axes and fake.use_mirroring == bool(axes)


def test_thin_slices_are_grouped_into_slabs_of_about_the_training_thickness():
    from spine_seg.core.errors import UsageError
    from spine_seg.segmentation.predict import average_slabs, slab_sizes

    assert slab_sizes(76, 1.0, 4.0) == (4,) * 19  # a VB2 volume: 76 slices of 1 mm
    assert slab_sizes(77, 1.0, 4.0) == (4,) * 18 + (5,)  # one slice left over: it joins the last slab
    assert slab_sizes(7, 1.0, 4.0) == (4, 3)  # three left over: a slab of its own
    assert slab_sizes(10, 1.5, 4.0) == (3, 3, 4)  # 1.5 mm slices: 3 a slab (4.5 mm)
    assert slab_sizes(18, 3.5, 4.0) == (1,) * 18  # a clinical series: as it is
    assert slab_sizes(18, 2.7, 4.0) == (1,) * 18  # round(4 / 2.7) = 1: thick enough
    assert slab_sizes(3, 1.0, 4.0) == (1,) * 3  # fewer slices than one slab
    assert slab_sizes(12, 1.0, None) == slab_sizes(12, 1.0, 0.0) == (1,) * 12
    with pytest.raises(UsageError, match="slab_mm must be positive, 0 or None"):
        slab_sizes(12, 1.0, -4.0)
    with pytest.raises(UsageError, match="slice spacing must be positive"):
        slab_sizes(12, 0.0, 4.0)
    with pytest.raises(UsageError, match="slice spacing must be positive, got nan"):
        slab_sizes(12, float("nan"), 4.0)

    volume = np.arange(7, dtype=np.float32)[:, None, None] * np.ones((7, 2, 3), np.float32)
    slabs = average_slabs(volume, (4, 3))
    assert slabs.shape == (2, 2, 3) and np.allclose(slabs[:, 0, 0], [1.5, 5.0])
    with pytest.raises(UsageError, match="do not add up to the 7 slices"):
        average_slabs(volume, (4, 4))


def test_precision_is_bfloat16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch):
    from spine_seg.core.errors import UsageError
    from spine_seg.segmentation import predict

    monkeypatch.setattr(predict, "cpu_has_native_bfloat16", lambda: True)
    assert predict.precision_mode(None, "cpu") == predict.precision_mode("auto", "cpu") == "bfloat16"
    assert predict.precision_mode("float32", "cpu") == "float32"
    monkeypatch.setattr(predict, "cpu_has_native_bfloat16", lambda: False)
    assert predict.precision_mode("auto", "cpu") == "float32"
    assert predict.precision_mode("bfloat16", "cpu") == "bfloat16"  # asked for: emulated, with a warning
    assert predict.precision_mode("float32", "cuda") == "float16"  # nnU-Net's own autocast on CUDA
    with pytest.raises(UsageError, match="unknown precision 'half'; valid: auto, float32, bfloat16"):
        predict.precision_mode("half", "cpu")


class _RecordingPredictor(_FakeNnunetPredictor):
    """Answers ``predict_single_npy_array`` with each input slice's index as its label, and records the input
    and the autocast state it ran under."""

    def __init__(self) -> None:
        super().__init__([0, 1, 2], [192, 192])
        self.calls: list[dict] = []

    def predict_single_npy_array(self, data, props, *_args):
        import torch

        self.calls.append(
            {
                "shape": data.shape,
                "spacing": list(props["spacing"]),
                "first": float(data[0, 0, 0, 0]),
                "bf16": torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16,
            }
        )
        return np.broadcast_to(np.arange(data.shape[1], dtype=np.uint8)[:, None, None], data.shape[1:]).copy()


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_predict_array_predicts_thin_slices_as_slabs_and_gives_each_slice_its_slab(precision: str):
    from spine_seg.segmentation.predict import SegmentationModel

    fake = _RecordingPredictor()
    model = SegmentationModel(
        fake, Path("."), (0,), "cpu", "none", {0: "background"}, 1, precision=precision, slab_mm=4.0
    )
    volume = np.arange(77, dtype=np.float32)[:, None, None] * np.ones((77, 5, 6), np.float32)
    labels = model.predict_array(volume, (0.8, 0.8, 1.0))
    call = fake.calls[-1]
    assert call["shape"] == (1, 19, 5, 6) and call["first"] == 1.5  # slices 0–3 averaged
    assert call["spacing"][1:] == [0.8, 0.8] and call["spacing"][0] == pytest.approx(77 / 19)
    assert call["bf16"] == (precision == "bfloat16")
    assert labels.shape == volume.shape  # back on the 77 slices: slice k carries its slab's labels
    assert labels[:4, 0, 0].tolist() == [0, 0, 0, 0] and labels[72:, 0, 0].tolist() == [18] * 5

    from spine_seg.core.errors import UsageError

    for bad in ((0.8, float("nan"), 1.0), (0.8, 0.8, float("inf")), (0.8, 0.0, 1.0)):
        with pytest.raises(UsageError, match="spacing_mm_ijk must be three positive numbers"):
            model.predict_array(volume, bad)
    thick = np.zeros((18, 5, 6), np.float32)
    assert model.predict_array(thick, (0.6, 0.6, 3.5)).shape == thick.shape
    assert fake.calls[-1]["shape"] == (1, 18, 5, 6) and fake.calls[-1]["spacing"] == [3.5, 0.6, 0.6]


def _spine_predictor(patch: list[int], step: float = 0.5):
    import torch

    from spine_seg.segmentation.predict import spine_predictor_class

    predictor = spine_predictor_class()(
        tile_step_size=step, perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False
    )
    predictor.configuration_manager = type("C", (), {"patch_size": patch})()
    return predictor


def test_tile_steps_per_axis_keep_nnunets_layout_and_coarsen_only_the_axis_asked():
    predictor = _spine_predictor([192, 192])
    image = (3, 305, 305)  # 3 slabs of a 381 mm field of view at 1.25 mm
    grid = predictor._internal_get_sliding_window_slicers(image)
    assert len(grid) == 3 * 3 * 3  # nnU-Net's 0.5: 3 × 3 patches a slice
    predictor.axis_steps = {0: 0.75}  # coarser along the rows (S–I in a sagittal slice)
    coarse = predictor._internal_get_sliding_window_slicers(image)
    assert len(coarse) == 3 * 2 * 3
    assert sorted({sl[2].start for sl in coarse}) == [0, 113] and sorted({sl[3].start for sl in coarse}) == [0, 56, 113]
    assert {sl[1] for sl in coarse} == {0, 1, 2} and all(sl[2].stop - sl[2].start == 192 for sl in coarse)
    assert all(sl in grid for sl in coarse)  # same slices, same patch starts: a subset of nnU-Net's own
    predictor.axis_steps = {}
    assert predictor._internal_get_sliding_window_slicers(image) == grid

    volume = _spine_predictor([32, 64, 64])  # 3d: every axis is an input axis
    volume.axis_steps = {1: 1.0}
    slicers = volume._internal_get_sliding_window_slicers((40, 100, 100))
    assert len(slicers) == 2 * 2 * 3 and all(len(sl) == 4 for sl in slicers)


@pytest.mark.parametrize("axes", [(0,), (0, 1)])
def test_mirrored_copies_in_one_batch_average_to_what_nnunet_computes(axes):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.manual_seed(0)
    predictor = _spine_predictor([16, 20])
    predictor.network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.InstanceNorm2d(3), torch.nn.Conv2d(3, 2, 3, padding=1)
    ).eval()
    predictor.allowed_mirroring_axes, predictor.use_mirroring = axes, True
    x = torch.randn(1, 1, 16, 20)
    batches: list[int] = []
    hook = predictor.network.register_forward_hook(lambda _m, args, _out: batches.append(args[0].shape[0]))
    batched = predictor._internal_maybe_mirror_and_predict(x)
    hook.remove()
    assert batches == [2 ** len(axes)]  # one call: the patch and its flipped copies together
    one_by_one = nnUNetPredictor._internal_maybe_mirror_and_predict(predictor, x)
    assert batched.shape == (1, 2, 16, 20)
    torch.testing.assert_close(batched, one_by_one)
    predictor.use_mirroring = False  # no flips: nnU-Net's own path
    torch.testing.assert_close(predictor._internal_maybe_mirror_and_predict(x), predictor.network(x))


# ---------------------------------------------------------------------------------------------------------
# CLI argument errors: one line, exit code 2


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train-seg", "--dataset", "598", "--config", "4d"],
            "unknown configuration '4d'; valid: 2d, 3d_fullres, 3d_lowres",
        ),
        (["train-seg", "--dataset", "598", "--device", "tpu"], "unknown device 'tpu'; valid: auto, cpu, cuda"),
        (["train-seg", "--dataset", "598", "--fold", "first"], "fold must be a non-negative integer or 'all'"),
        (["train-seg", "--dataset", "598", "--epochs", "0"], "epochs must be at least 1"),
        (
            ["train-seg", "--dataset", "598", "--device", "cpu", "--trainer", "nnUNetTrainer_Bogus"],
            "unknown trainer 'nnUNetTrainer_Bogus'; valid: nnUNetTrainer, nnUNetTrainer_Smoke",
        ),
        (["train-seg", "--dataset", "598", "--device", "cpu"], "no Dataset598_* in"),
        (["prepare", "--source", "nowhere", "--input", "{tmp}"], "unknown source 'nowhere'; valid: spider, rsna"),
        (["prepare", "--source", "synthetic", "--input", "{tmp}/missing"], "missing: no such folder (--input)"),
        (["prepare", "--source", "synthetic", "--input", "{tmp}", "--budget", "huge"], "unknown budget 'huge'"),
        (["prepare", "--source", "synthetic", "--input", "{tmp}", "--config", "3d"], "unknown configuration '3d'"),
    ],
)
def test_cli_argument_errors(seg_home: Path, tmp_path: Path, args: list[str], message: str):
    res = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert "error: " in res.stderr and message in res.stderr and "Traceback" not in res.output


def test_cli_cuda_without_gpu(seg_home: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = runner.invoke(app, ["train-seg", "--dataset", "598", "--device", "cuda"])
    assert res.exit_code == 2 and "error: device 'cuda' requested but torch" in res.stderr


def test_cli_unwritable_home(seg_home: Path, tmp_path: Path):
    seg_home.parent.mkdir(parents=True, exist_ok=True)
    seg_home.write_text("not a folder")
    res = runner.invoke(app, ["prepare", "--source", "synthetic", "--input", str(tmp_path), "--budget", "cpu"])
    assert res.exit_code == 2
    assert "error: nnUNet_raw folder" in res.stderr and "set SPINESEG_HOME (or nnUNet_raw)" in res.stderr


# ---------------------------------------------------------------------------------------------------------
# train and predict on CPU


@pytest.mark.slow
def test_cpu_smoke_train_and_predict(seg_home: Path, tmp_path: Path):
    """Synthetic cohort → Dataset599 (registry's synthetic converter) → CPU-budget plans at 3 mm → 2 × 2
    iterations of nnUNetTrainer_Smoke → SegmentationModel on a test study's Sagittal T2 stack."""
    from spine_seg.core.constants import SeriesKind
    from spine_seg.core.errors import UsageError
    from spine_seg.core.labels import SEG_LABELS
    from spine_seg.dicom import load_study
    from spine_seg.segmentation.predict import SegmentationModel
    from spine_seg.synthetic import CohortConfig, generate_cohort
    from spine_seg_nnunet_tasks.registry import CONVERTERS

    t0 = time.perf_counter()
    cohort = generate_cohort(tmp_path / "cohort", CohortConfig(n_studies=4, seed=0, test_fraction=0.25))
    env = nnunet_env.apply()
    folder = CONVERTERS["synthetic"](cohort.out, env.raw, 599)
    assert folder.parent == env.raw and seg_train.dataset_id_of(folder) == 599

    prepared = seg_train.plan_and_preprocess(599, ("2d",), "cpu", inplane_spacing_mm=3.0)
    assert prepared.plans == "nnUNetPlans_CPUBudget" and prepared.plans_file.is_file()
    assert prepared.spacing_mm["2d"] == [3.0, 3.0] and prepared.batch_size["2d"] <= 4

    seen = []
    result = seg_train.train(599, "2d", 0, "nnUNetTrainer_Smoke", "cpu", progress=seen.append)
    assert [r.epoch for r in seen] == [1, 2] and result.epochs == 2 and result.history == tuple(seen)
    assert all(len(r.pseudo_dice) == len(SEG_LABELS) - 1 for r in seen)
    assert result.device == "cpu" and result.plans == "nnUNetPlans_CPUBudget"
    assert result.result_folder.name == "nnUNetTrainer_Smoke__nnUNetPlans_CPUBudget__2d"
    assert result.checkpoint.is_file() and (result.fold_folder / seg_train.TRAIN_RECORD).is_file()
    assert result.final_dice is not None and 0.0 <= result.final_dice <= 1.0
    assert set(result.dice_per_label) <= set(SEG_LABELS)

    with pytest.raises(FileNotFoundError, match="available: \\['0'\\]"):
        SegmentationModel.from_folder(result.result_folder, fold=3, device="cpu")
    model = SegmentationModel.from_folder(result.result_folder, fold=0, device="cpu")
    assert model.mirroring == "superior_inferior" and model.label_names == {v: k for k, v in SEG_LABELS.items()}
    assert model.slab_mm == 4.0 and model.precision in ("float32", "bfloat16")
    assert model.predictor.tile_step_size == 0.5 and model.tile_step_si == 0.75
    with pytest.raises(UsageError, match="tile_step_size must be in \\(0, 1\\], got 1.5"):
        SegmentationModel.from_folder(result.result_folder, fold=0, device="cpu", tile_step_size=1.5)
    study = load_study(cohort.out / "test_images" / cohort.test_ids[0])
    stack = study.series_of_kind(SeriesKind.SAGITTAL_T2)[0].stacks[0]
    lv = model.predict_stack(stack)
    assert lv.shape == stack.shape and lv.labels.dtype == np.uint8
    assert model.predictor.allowed_mirroring_axes == (0,)  # the sagittal rows (head to feet), flipped
    assert model.predictor.axis_steps == {0: 0.75}  # … and tiled with the coarser step
    from spine_seg.segmentation.predict import NNUNET_AS_IS

    plain = SegmentationModel.from_folder(result.result_folder, fold=0, device="cpu", **NNUNET_AS_IS)
    assert (plain.mirroring, plain.precision, plain.slab_mm, plain.tile_step_si) == ("none", "float32", None, None)
    assert plain.predict_stack(stack).shape == stack.shape and plain.predictor.axis_steps == {}  # nnU-Net's layout
    assert np.allclose(lv.affine, stack.affine)
    assert set(np.unique(lv.labels).tolist()) <= set(SEG_LABELS.values())
    assert lv.present() and set(lv.present()) <= set(SEG_LABELS) - {"background"}

    # the CLI on the same dataset: 2 epochs planned, but a time budget that only one fits; no validation, JSON out
    res = runner.invoke(
        app,
        [
            "train-seg",
            "--dataset",
            "599",
            "--config",
            "2d",
            "--fold",
            "0",
            "--trainer",
            "nnUNetTrainer_Smoke",
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--time-budget",
            "0.0001",
            "--no-validate",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["epochs"] == 1 and doc["final_dice"] is None
    assert "epoch 1/2" in res.stderr and "epoch 2/" not in res.stderr
    print(f"smoke train+predict: {time.perf_counter() - t0:.1f} s")


def test_warm_start_weights_load_and_mismatches_are_named(tmp_path):
    import torch

    from spine_seg.core.errors import UsageError
    from spine_seg.segmentation.weights import load_network_weights

    src = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 2, 1))
    ckpt = tmp_path / "fold_0.pth"
    torch.save({"network_weights": {k: v.half() for k, v in src.state_dict().items()}}, ckpt)  # an fp16 export
    dst = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 2, 1))
    load_network_weights(dst, ckpt)
    for k, v in dst.state_dict().items():
        assert v.dtype == torch.float32 and torch.allclose(v, src.state_dict()[k].half().float())
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 2, 1))
    with pytest.raises(UsageError, match="first 0.weight"):
        load_network_weights(other, ckpt)
    torch.save({"state_dict": {}}, tmp_path / "bad.pth")
    with pytest.raises(UsageError, match="no network_weights"):
        load_network_weights(dst, tmp_path / "bad.pth")
