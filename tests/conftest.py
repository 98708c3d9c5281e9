"""Shared fixtures: a tiny synthetic three-series study written with pydicom, and the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from spine_seg.core import geometry
from spine_seg.dicom.write import write_stack

REPO = Path(__file__).resolve().parents[1]
REAL_STUDY_ID = "100206310"


def shared_data_dir() -> Path:
    return Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $SPINESEG_DATA). Missing: a failure under CI, a skip elsewhere."""
    path = shared_data_dir()
    if not (path / "rsna2024").is_dir():
        msg = f"real data folder {path} not found (set SPINESEG_DATA to the folder holding rsna2024/)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def real_study_dir(shared_data: Path) -> Path:
    return shared_data / "rsna2024" / "train_images" / REAL_STUDY_ID


# Sagittal: rows run inferior (-S), columns run posterior (+P); the normal then points to the patient's right.
SAG_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
AXIAL_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def tilted_axial_iop(deg: float) -> tuple[float, ...]:
    """An axial plane tilted about the L-R axis, as axial blocks are angled along each disc."""
    t = np.radians(deg)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))


def ramp(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    return (100 * k + 3 * j + i + rng.integers(0, 3, shape)).astype(np.uint16)


def make_study(root: Path, study_id: str = "777", shuffle_axial: bool = True, **kwargs) -> Path:
    """Write a small study: Sagittal T1 and T2 (6 slices, 40×32) and a two-block oblique Axial T2.

    Axial block A (4 slices, tilted 10°) and block B (3 slices, tilted -15°) use instance numbers
    1–4 and 5–7; with ``shuffle_axial`` their instance numbers are permuted within each block.
    """
    study = root / study_id
    for series_id, desc in (("11", "T1"), ("12", "T2")):
        aff = geometry.affine_from_headers((-12.5, -60.0, 40.0), SAG_IOP, (0.8, 0.7), 4.0)
        write_stack(
            study / series_id,
            ramp((6, 40, 32), int(series_id)),
            aff,
            study_id=study_id,
            series_id=series_id,
            series_description=desc,
            slice_thickness_mm=3.5,
            **kwargs,
        )
    rng = np.random.default_rng(0)
    for block, (deg, z0, n, first) in enumerate(((10.0, 0.0, 4, 1), (-15.0, -30.0, 3, 5))):
        iop = tilted_axial_iop(deg)
        aff = geometry.affine_from_headers((-20.0, -40.0, z0), iop, (0.6, 0.6), 3.0)
        order = rng.permutation(n) if shuffle_axial else None
        write_stack(
            study / "13",
            ramp((n, 48, 48), 13 + block),
            aff,
            study_id=study_id,
            series_id="13",
            first_instance=first,
            instance_order=order,
            series_description="T2",
            slice_thickness_mm=3.0,
            **kwargs,
        )
    return study


@pytest.fixture()
def synthetic_study(tmp_path: Path) -> Path:
    return make_study(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# a tiny but real model bundle: nnU-Net smoke model + a small timm grading ensemble + the axial fallback


TINY_BUNDLE_DATASET = 598


class TinyBundle:
    """Where the session's tiny bundle and its cohort live (built once, ~1 min on 2 CPU cores)."""

    def __init__(self, root: Path, bundle: Path, cohort: Path, train_ids: tuple[str, ...], test_ids: tuple[str, ...]):
        self.root, self.bundle, self.cohort = root, bundle, cohort
        self.train_ids, self.test_ids = train_ids, test_ids


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """Synthetic cohort (3 train, 2 test) → nnUNetTrainer_Smoke at 3 mm → 1-epoch resnet10t grading (2
    folds) and fallback → ``spine_seg.inference.bundle.export_bundle``. The models learn nearly nothing; the files,
    manifests and code paths are the real ones."""
    from spine_seg.grading.crops import CropSpec
    from spine_seg.grading.train import TrainConfig
    from spine_seg.inference.bundle import export_bundle
    from spine_seg.segmentation import nnunet_env
    from spine_seg.segmentation import train as seg_train
    from spine_seg.synthetic import CohortConfig, generate_cohort
    from spine_seg.workflows.recipe import train_grading
    from spine_seg_nnunet_tasks.registry import CONVERTERS

    root = tmp_path_factory.mktemp("tiny_bundle")
    saved = dict(os.environ)
    for var in (nnunet_env.HOME_VAR, *nnunet_env.PATH_VARS):
        os.environ.pop(var, None)
    os.environ[nnunet_env.HOME_VAR] = str(root / "home")
    try:
        cohort = generate_cohort(root / "cohort", CohortConfig(n_studies=5, seed=3, test_fraction=0.4))
        env = nnunet_env.apply()
        CONVERTERS["synthetic"](cohort.out, env.raw, TINY_BUNDLE_DATASET, sequences=("t2",))
        seg_train.plan_and_preprocess(TINY_BUNDLE_DATASET, ("2d",), "cpu", inplane_spacing_mm=3.0)
        seg = seg_train.train(TINY_BUNDLE_DATASET, "2d", "all", "nnUNetTrainer_Smoke", "cpu", validate=False)
        specs = {g: CropSpec(fov_mm=45.0, size_px=48, n_slices=3) for g in ("spinal", "foraminal", "subarticular")}
        cfg = TrainConfig(
            backbone="resnet10t", folds=2, epochs=1, batch_size=16, weights="random", device="cpu", progress=False
        )
        grading = train_grading(cohort.out, root / "crops", specs, cfg, root / "grading" / "tiny", echo=lambda s: None)
        bundle = export_bundle(
            root / "bundle",
            seg.result_folder,
            grading.ensemble,
            folds=["all"],
            fallback=grading.fallback,
            name="tiny",
            training_data={"source": "tests/conftest.py tiny_bundle"},
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return TinyBundle(root, bundle, cohort.out, cohort.train_ids, cohort.test_ids)


@pytest.fixture()
def stub(monkeypatch: pytest.MonkeyPatch):
    """``spineseg predict`` with ``fault_kit.StubPredictor`` in place of the models (the fault corpus)."""
    from fault_kit import StubPredictor

    from spine_seg.inference import predictor

    StubPredictor.constructed = 0
    monkeypatch.setattr(predictor, "Predictor", StubPredictor)
    return StubPredictor
