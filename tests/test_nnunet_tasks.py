"""nnU-Net dataset converters: SPIDER (synthetic cohort), RSNA keypoints (synthetic + the real study),
MyoSegmenTUM (real .mat files), the shared helpers and the registry."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import REAL_STUDY_ID

from spine_seg.core import geometry
from spine_seg.core.geometry import sitk_geometry_from_affine
from spine_seg.core.labels import SEG_LABELS, SPIDER_PARTIAL_OFFSET, SYNTHETIC_SACRUM, spider_to_seg_lut
from spine_seg.dicom import load_study
from spine_seg.synthetic import CohortConfig, generate_cohort
from spine_seg_nnunet_tasks import registry
from spine_seg_nnunet_tasks.common import (
    apply_lut,
    grouped_folds,
    prepare_dataset_folder,
    sitk_image,
)
from spine_seg_nnunet_tasks.Dataset501_SPIDER import (
    SpiderNumberingError,
    SpiderNumberingWarning,
    assumed_convention,
    check_spider_numbering,
    convert_spider,
    parse_spider_name,
    spider_lut,
)
from spine_seg_nnunet_tasks.Dataset502_RSNAKeypoints import (
    KEYPOINT_LABELS,
    convert_rsna_keypoints,
    draw_keypoints,
    keypoint_label,
)
from spine_seg_nnunet_tasks.Dataset503_MyoSegmenTUM import LABELS as MYO_LABELS
from spine_seg_nnunet_tasks.Dataset503_MyoSegmenTUM import convert_myosegmentum

# ---------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training studies in the competition layout plus their SPIDER-layout masks (≈1 s)."""
    out = tmp_path_factory.mktemp("cohort") / "cohort"
    generate_cohort(out, CohortConfig(n_studies=2, seed=0, test_fraction=0.0, sagittal_matrix=192, axial_matrix=64))
    return out


@pytest.fixture(scope="module")
def spider_ds(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_spider(cohort / "spider", tmp_path_factory.mktemp("raw"))


def _read(path: Path) -> tuple[sitk.Image, np.ndarray]:
    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayFromImage(img)


def _assert_same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def _centroid_world(img: sitk.Image, arr: np.ndarray, value: int) -> np.ndarray:
    k, j, i = np.nonzero(arr == value)
    return np.array(img.TransformContinuousIndexToPhysicalPoint((float(i.mean()), float(j.mean()), float(k.mean()))))


def _check_dataset_files(ds: Path) -> dict:
    """dataset.json is complete and consistent with imagesTr/labelsTr; splits are grouped and complete."""
    doc = json.loads((ds / "dataset.json").read_text())
    labels = doc["labels"]
    plain = sorted(v for k, v in labels.items() if k != "ignore")
    assert labels["background"] == 0 and plain == list(range(len(plain)))
    images = sorted(p.name[: -len("_0000.nii.gz")] for p in (ds / "imagesTr").glob("*_0000.nii.gz"))
    label_files = sorted(p.name[: -len(".nii.gz")] for p in (ds / "labelsTr").glob("*.nii.gz"))
    assert images == label_files and doc["numTraining"] == len(images) and doc["file_ending"] == ".nii.gz"
    splits = json.loads((ds / "splits_final.json").read_text())
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == images, "every training case is validated exactly once"
    if len(splits) == 1:  # one patient/study only: nnU-Net still needs a split, it validates on its training cases
        assert splits[0]["train"] == splits[0]["val"] == images
        return doc
    for s in splits:
        assert not set(s["train"]) & set(s["val"]) and sorted(s["train"] + s["val"]) == images
    return doc


# ---------------------------------------------------------------------------------------------------------
# common helpers


def test_grouped_folds_keep_groups_together_and_are_deterministic() -> None:
    cases = [f"p{g}_s{s}" for g in range(11) for s in range(1 + g % 3)]
    groups = [c.split("_")[0] for c in cases]
    folds = grouped_folds(cases, groups, n_folds=5, seed=3)
    assert folds == grouped_folds(list(reversed(cases)), list(reversed(groups)), n_folds=5, seed=3)
    assert len(folds) == 5
    fold_of = {}
    for f, s in enumerate(folds):
        for c in s["val"]:
            assert fold_of.setdefault(c.split("_")[0], f) == f, "a patient in two folds"
    sizes = [len(s["val"]) for s in folds]
    assert sum(sizes) == len(cases) and max(sizes) - min(sizes) <= 3
    assert len(grouped_folds(cases[:3], groups[:3], n_folds=5)) == 2  # two groups → two folds
    single = grouped_folds(["a", "b"], ["g", "g"])
    assert single == [{"train": ["a", "b"], "val": ["a", "b"]}]


def test_affine_to_sitk_geometry_matches_spineseg_geometry() -> None:
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    aff = geometry.affine_from_headers((-12.5, -60.0, 40.0), iop, (0.8, 0.7), 4.0)
    img = sitk_image(np.zeros((6, 40, 32), np.int16), aff)
    assert img.GetSpacing() == pytest.approx((0.7, 0.8, 4.0))
    for ijk in [(0, 0, 0), (31, 39, 5), (3.5, 7.25, 2.0)]:
        np.testing.assert_allclose(
            img.TransformContinuousIndexToPhysicalPoint(ijk), geometry.voxel_to_world(aff, ijk), atol=1e-9
        )
    sheared = aff.copy()
    sheared[:3, 2] += sheared[:3, 0] * 0.2  # slices offset along the rows: a sheared grid
    spacing, _, direction = sitk_geometry_from_affine(sheared)
    d = np.array(direction).reshape(3, 3)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)
    assert spacing[2] == pytest.approx(4.0)


def test_prepare_dataset_folder_refuses_clobbering_and_id_clashes(tmp_path: Path) -> None:
    ds = prepare_dataset_folder(tmp_path, 501, "SPIDER")
    (ds / "dataset.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_dataset_folder(tmp_path, 501, "SPIDER")
    assert prepare_dataset_folder(tmp_path, 501, "SPIDER", overwrite=True) == ds
    with pytest.raises(ValueError, match="already used by"):
        prepare_dataset_folder(tmp_path, 501, "Other")
    with pytest.raises(ValueError, match="1 to 999"):
        prepare_dataset_folder(tmp_path, 1501, "X")


def test_registry_names_ids_and_unknown_source(tmp_path: Path) -> None:
    assert set(registry.CONVERTERS) == set(registry.DEFAULT_IDS)
    assert {"spider", "rsna", "myosegmentum", "synthetic"} <= set(registry.CONVERTERS)
    assert len(set(registry.DEFAULT_IDS.values())) == len(registry.DEFAULT_IDS)
    assert all(500 <= v < 600 for v in registry.DEFAULT_IDS.values())
    with pytest.raises(ValueError, match=r"unknown dataset source 'verse'; valid: \[.*'spider'"):
        registry.get_converter("verse")
    with pytest.raises(FileNotFoundError, match="spider/"):
        registry.convert("synthetic", tmp_path, tmp_path / "raw")


# ---------------------------------------------------------------------------------------------------------
# SPIDER


def test_parse_spider_name() -> None:
    assert parse_spider_name("12_t1") == (12, "t1")
    assert parse_spider_name("7_t2_SPACE") == (7, "t2_SPACE")
    with pytest.raises(ValueError, match="not a SPIDER series name"):
        parse_spider_name("12_flair")


def test_spider_dataset_json_labels_are_spineseg_labels(spider_ds: Path) -> None:
    doc = _check_dataset_files(spider_ds)
    assert doc["labels"] == SEG_LABELS
    assert doc["channel_names"] == {"0": "MRI"}
    assert "van der Graaf" in doc["citation"]


def test_spider_maps_every_class_with_source_geometry(spider_ds: Path, cohort: Path) -> None:
    lut = spider_to_seg_lut()
    seen: set[int] = set()
    for src_mask in sorted((cohort / "spider" / "masks").glob("*.mha")):
        patient, seq = parse_spider_name(src_mask.stem)
        case = f"spider_{patient:03d}_{seq}"
        src_img, _ = _read(cohort / "spider" / "images" / src_mask.name)
        src_msk, src = _read(src_mask)
        img, pixels = _read(spider_ds / "imagesTr" / f"{case}_0000.nii.gz")
        lab_img, lab = _read(spider_ds / "labelsTr" / f"{case}.nii.gz")
        _assert_same_grid(img, lab_img)
        _assert_same_grid(img, src_img)
        np.testing.assert_array_equal(pixels, sitk.GetArrayFromImage(src_img))
        assert lab.dtype == np.uint8
        np.testing.assert_array_equal(lab, apply_lut(src, lut))
        for v in np.unique(src).tolist():
            if v in lut:
                assert np.array_equal(lab[src == v], np.full((src == v).sum(), lut[v])), f"{case}: value {v}"
                seen.add(lut[v])
            else:
                assert not lab[src == v].any(), f"{case}: value {v} must become background"
    assert {SEG_LABELS[n] for n in ("L2", "L3", "L4", "L5", "disc_l1_l2", "disc_l5_s1", "spinal_canal")} <= seen


def test_spider_splits_group_patients(spider_ds: Path) -> None:
    splits = json.loads((spider_ds / "splits_final.json").read_text())
    for s in splits:
        train_patients = {c.split("_")[1] for c in s["train"]}
        val_patients = {c.split("_")[1] for c in s["val"]}
        assert not train_patients & val_patients


def test_numbering_check_passes_on_synthetic_masks(cohort: Path) -> None:
    assert assumed_convention() == "L5=1"
    for path in sorted((cohort / "spider" / "masks").glob("*.mha")):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SpiderNumberingWarning)
            chk = check_spider_numbering(sitk.ReadImage(str(path)))
        assert chk.ok and chk.decided and chk.convention == "L5=1", chk.summary()
        assert chk.details["numbers_run"] == "cranially"


def _renumber(mask: sitk.Image, fn) -> sitk.Image:
    arr = sitk.GetArrayFromImage(mask).astype(np.int32)
    out = arr.copy()
    for lo in (0, SPIDER_PARTIAL_OFFSET):
        sel = (arr > lo) & (arr <= lo + 25)
        out[sel] = np.where(fn(arr[sel] - lo) > 0, fn(arr[sel] - lo) + lo, 0)
    img = sitk.GetImageFromArray(out.astype(np.uint16))
    img.CopyInformation(mask)
    return img


def _sacrum_first(mask: sitk.Image) -> sitk.Image:
    """Renumber to the other convention (MRSpineSeg's): sacrum = 1, L5 = 2, …; discs keep their values."""
    arr = sitk.GetArrayFromImage(mask).astype(np.int32)
    out = arr.copy()
    for lo in (0, SPIDER_PARTIAL_OFFSET):
        sel = (arr > lo) & (arr <= lo + 25)
        out[sel] = arr[sel] + 1
    out[arr == SYNTHETIC_SACRUM] = 1
    img = sitk.GetImageFromArray(out.astype(np.uint16))
    img.CopyInformation(mask)
    return img


def test_numbering_check_flags_renumbered_masks(cohort: Path) -> None:
    mask = sitk.ReadImage(str(cohort / "spider" / "masks" / "1_t2.mha"))
    with pytest.warns(SpiderNumberingWarning, match="geometry says sacrum=1"):
        chk = check_spider_numbering(_sacrum_first(mask))
    assert not chk.ok and chk.decided and chk.convention == "sacrum=1"
    top_down = _renumber(mask, lambda n: 10 - n)  # vertebra 1 at the top
    with pytest.warns(SpiderNumberingWarning, match="caudally"):
        chk = check_spider_numbering(top_down)
    assert not chk.ok
    swapped = _renumber(mask, lambda n: np.where(n == 3, 4, np.where(n == 4, 3, n)))  # L4 and L3 exchanged
    with pytest.warns(SpiderNumberingWarning, match="not in number order"):
        assert not check_spider_numbering(swapped).ok
    # a bare array (no geometry) still orders by index; the cranial direction is then untested
    chk = check_spider_numbering(sitk.GetArrayFromImage(mask), warn=False)
    assert chk.ok and "numbers_run" not in chk.details


def _toy_spine(sacrum_length: int) -> np.ndarray:
    """Boxes along k (identity affine: k runs cranially): sacrum 1, vertebrae 2–4 of 20 slices, discs between."""
    arr = np.zeros((40 + sacrum_length + 80, 8, 8), np.uint16)
    k = 0
    for value, length in ((1, sacrum_length), (201, 4), (2, 20), (202, 4), (3, 20), (203, 4), (4, 20)):
        arr[k + 1 : k + 1 + length, 2:6, 2:6] = value
        k += length + 2
    return arr


def test_numbering_check_sacrum_shape() -> None:
    # geometry recognises the sacrum-first convention (and the assumed L5 = 1 table rejects it)
    chk = check_spider_numbering(_toy_spine(60), np.eye(4), warn=False)
    assert not chk.ok and chk.convention == "sacrum=1", chk.summary()
    flipped = np.diag([1.0, 1.0, -1.0, 1.0])  # k now runs caudally: vertebra 1 would be the most cranial
    with pytest.warns(SpiderNumberingWarning, match="caudally"):
        check_spider_numbering(_toy_spine(60), flipped)


def test_spider_mismatch_policies_and_partial_modes(cohort: Path, tmp_path: Path) -> None:
    src = tmp_path / "spider"
    shutil.copytree(cohort / "spider", src)
    sitk.WriteImage(_sacrum_first(sitk.ReadImage(str(src / "masks" / "2_t1.mha"))), str(src / "masks" / "2_t1.mha"))
    with pytest.warns(SpiderNumberingWarning, match="failed on 1/4"):
        ds = convert_spider(src, tmp_path / "warn", sequences=["t1", "t2"])
    report = json.loads((ds / "spineseg_conversion.json").read_text())
    assert report["options"]["numbering_verdicts"] == {"L5=1": 3, "sacrum=1": 1}
    ds = convert_spider(src, tmp_path / "skip", on_numbering_mismatch="skip", sequences=["t1"])
    report = json.loads((ds / "spineseg_conversion.json").read_text())
    assert [c["case_id"] for c in report["cases"]] == ["spider_001_t1"]
    assert report["skipped"][0]["item"] == "2_t1" and "sacrum=1" in report["skipped"][0]["reason"]
    with pytest.raises(SpiderNumberingError, match="2_t1.mha"):
        convert_spider(src, tmp_path / "error", on_numbering_mismatch="error")
    # partly visible vertebrae as nnU-Net's ignore label
    ds = convert_spider(cohort / "spider", tmp_path / "ignore", partial="ignore", sequences=["t2"])
    doc = _check_dataset_files(ds)
    assert doc["labels"]["ignore"] == len(SEG_LABELS)
    lut = spider_lut("ignore")
    _, src_arr = _read(cohort / "spider" / "masks" / "1_t2.mha")
    _, lab = _read(ds / "labelsTr" / "spider_001_t2.nii.gz")
    partial_lumbar = [v for v in np.unique(src_arr).tolist() if lut.get(v) == len(SEG_LABELS)]
    assert partial_lumbar and all((lab[src_arr == v] == len(SEG_LABELS)).all() for v in partial_lumbar)
    with pytest.raises(ValueError, match="unknown SPIDER sequence"):
        convert_spider(cohort / "spider", tmp_path / "bad", sequences=["t3"])


def test_registry_converts_synthetic_cohort_to_its_own_id(cohort: Path, tmp_path: Path) -> None:
    ds = registry.convert("synthetic", cohort, tmp_path, sequences=["t2"])
    assert ds.name == "Dataset505_SyntheticSPIDER"
    assert sorted(p.name for p in (ds / "labelsTr").iterdir()) == ["synthetic_001_t2.nii.gz", "synthetic_002_t2.nii.gz"]


# ---------------------------------------------------------------------------------------------------------
# RSNA keypoints


def test_draw_keypoints_sizes_in_mm_and_slices() -> None:
    vol, overlap = draw_keypoints((5, 40, 40), [(2, 20.0, 20.0, 3)], (0.5, 1.0), radius_mm=2.0, slice_extent=0)
    assert overlap == 0 and set(np.nonzero(vol)[0]) == {2}
    j, i = np.nonzero(vol[2])
    assert (i.max() - i.min(), j.max() - j.min()) == (8, 4)  # 2 mm = 4 columns of 0.5 mm, 2 rows of 1 mm
    vol, _ = draw_keypoints((5, 40, 40), [(0, 20.0, 20.0, 1)], (1.0, 1.0), radius_mm=3.0, slice_extent=1)
    assert set(np.nonzero(vol)[0]) == {0, 1} and (vol[1] > 0).sum() < (vol[0] > 0).sum()
    vol, _ = draw_keypoints((1, 10, 10), [(0, 4.2, 5.4, 7)], (2.0, 2.0), radius_mm=0.1)
    assert vol[0, 5, 4] == 7 and vol.sum() == 7  # a tiny radius still marks the nearest pixel
    assert (
        keypoint_label("foraminal", "Right Neural Foraminal Narrowing", "L5/S1")
        == KEYPOINT_LABELS["foraminal"]["right_foramen_l5_s1"]
    )


def _assert_blobs_at_keypoints(ds: Path, coords: pd.DataFrame, study_root: Path, task: str, series_csv: Path) -> int:
    """Every label blob's centroid lies at its keypoint, mapped to LPS through spineseg's own DICOM geometry."""
    doc = _check_dataset_files(ds)
    assert doc["labels"] == KEYPOINT_LABELS[task]
    n = 0
    for label_path in sorted((ds / "labelsTr").glob("*.nii.gz")):
        study_id, series_id = label_path.name[: -len(".nii.gz")].split("_")[:2]
        lab_img, lab = _read(label_path)
        img, _ = _read(ds / "imagesTr" / label_path.name.replace(".nii.gz", "_0000.nii.gz"))
        _assert_same_grid(img, lab_img)
        series = load_study(study_root / study_id, series_csv).get_series(series_id)
        stack = series.stacks[0]
        np.testing.assert_allclose(img.GetSpacing(), stack.spacing_mm, rtol=1e-5)
        np.testing.assert_allclose(img.GetOrigin(), stack.slices[0].ipp, atol=1e-3)
        rows = coords[(coords.study_id.astype(str) == study_id) & (coords.series_id.astype(str) == series_id)]
        assert len(rows) == len(KEYPOINT_LABELS[task]) - 1
        for r in rows.itertuples():
            value = keypoint_label(task, r.condition, r.level)
            expected = series.pixel_to_world(int(r.instance_number), float(r.x), float(r.y))
            got = _centroid_world(img, lab, value)
            assert np.linalg.norm(got - expected) < 0.75 * max(stack.spacing_mm[:2]), (label_path.name, r)
            n += 1
    return n


@pytest.mark.parametrize("task", ["spinal", "foraminal"])
def test_rsna_keypoints_on_synthetic_cohort(cohort: Path, tmp_path: Path, task: str) -> None:
    ds = convert_rsna_keypoints(cohort, tmp_path, task=task, radius_mm=3.0)
    assert (
        ds.name == {"spinal": "Dataset502_RSNASpinalKeypoints", "foraminal": "Dataset504_RSNAForaminalKeypoints"}[task]
    )
    coords = pd.read_csv(cohort / "train_label_coordinates.csv")  # Kaggle's spelling: "Spinal Canal Stenosis", "L1/L2"
    n = _assert_blobs_at_keypoints(ds, coords, cohort / "train_images", task, cohort / "train_series_descriptions.csv")
    assert n == 2 * (len(KEYPOINT_LABELS[task]) - 1)
    doc = json.loads((ds / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": {"spinal": "T2", "foraminal": "T1"}[task]}


def test_rsna_slice_extent_and_skipped_series(cohort: Path, tmp_path: Path) -> None:
    coords = pd.read_csv(cohort / "train_label_coordinates.csv")
    spinal = coords[coords.condition == "Spinal Canal Stenosis"]
    first = spinal.iloc[0]
    bad = pd.DataFrame(
        [
            {**first.to_dict(), "series_id": 123},  # a series with no folder
            {
                **first.to_dict(),
                "series_id": coords[coords.condition != "Spinal Canal Stenosis"].iloc[0].series_id,
            },  # a T1 series
        ]
    )
    csv = tmp_path / "coords.csv"
    pd.concat([spinal, bad]).to_csv(csv, index=False)
    ds = convert_rsna_keypoints(cohort, tmp_path / "raw", coords_csv=csv, slice_extent=1)
    report = json.loads((ds / "spineseg_conversion.json").read_text())
    reasons = " | ".join(s["reason"] for s in report["skipped"])
    assert "no folder" in reasons and "needs Sagittal T2/STIR" in reasons
    assert report["n_cases"] == 2
    lab_img, lab = _read(next((ds / "labelsTr").glob("*.nii.gz")))
    k_of = {v: sorted(set(np.nonzero(lab == v)[0])) for v in range(1, 6)}
    assert all(len(ks) == 3 and ks[2] - ks[0] == 2 for ks in k_of.values()), k_of  # labelled slice ± 1


@pytest.mark.real_data
@pytest.mark.parametrize("task", ["spinal", "foraminal"])
def test_rsna_keypoints_on_real_study(shared_data: Path, tmp_path: Path, task: str) -> None:
    root = shared_data / "rsna2024"
    coords_csv = root / "train_label_coordinates.fix01b.csv"
    ds = convert_rsna_keypoints(root, tmp_path, task=task, coords_csv=coords_csv, study_ids=[REAL_STUDY_ID])
    coords = pd.read_csv(coords_csv, dtype={"study_id": str, "series_id": str})
    coords = coords[coords.study_id == REAL_STUDY_ID]
    n = _assert_blobs_at_keypoints(ds, coords, root / "train_images", task, root / "train_series_descriptions.csv")
    assert n == len(KEYPOINT_LABELS[task]) - 1
    series = {"spinal": "1792451510", "foraminal": "2092806862"}[task]
    assert [p.name for p in (ds / "imagesTr").iterdir()] == [f"{REAL_STUDY_ID}_{series}_0000.nii.gz"]


# ---------------------------------------------------------------------------------------------------------
# MyoSegmenTUM


@pytest.mark.real_data
def test_myosegmentum_real_files(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "myosegmentum"
    ds = convert_myosegmentum(src, tmp_path, files=["01.mat", "18.mat", "19.mat"])
    doc = _check_dataset_files(ds)
    assert doc["labels"] == MYO_LABELS
    assert all(MYO_LABELS[k] == SEG_LABELS[k] for k in MYO_LABELS)
    assert sorted(p.name for p in (ds / "imagesTs").iterdir()) == ["myosegmentum_18_0000.nii.gz"]
    report = json.loads((ds / "spineseg_conversion.json").read_text())
    assert report["skipped"] == [{"item": str(src / "19.mat"), "reason": "duplicate of 18.mat"}]
    for name in ("labelsTr/myosegmentum_01.nii.gz", "labelsTs/myosegmentum_18.nii.gz"):
        lab_img, lab = _read(ds / name)
        img, _ = _read(ds / name.replace("labels", "images").replace(".nii.gz", "_0000.nii.gz"))
        _assert_same_grid(img, lab_img)
        assert img.GetSpacing() == (1.0, 1.0, 1.0)
        z = [_centroid_world(lab_img, lab, SEG_LABELS[f"L{n}"])[2] for n in range(1, 6)]
        assert z == sorted(z, reverse=True), f"{name}: L1 must be the most superior, then L2 … L5: {z}"
        # i runs anterior → posterior, j superior → inferior, k = i × j (a right-handed sagittal stack)
        np.testing.assert_array_equal(
            np.array(lab_img.GetDirection()).reshape(3, 3), [[0, 0, -1], [1, 0, 0], [0, -1, 0]]
        )
    ds2 = convert_myosegmentum(
        src, tmp_path, files=["18.mat", "19.mat"], test_ids=(), keep_duplicates=True, overwrite=True
    )
    assert sorted(p.name for p in (ds2 / "imagesTr").iterdir()) == [
        "myosegmentum_18_0000.nii.gz",
        "myosegmentum_19_0000.nii.gz",
    ]
    assert not (ds2 / "imagesTs").exists()
