"""The synthetic cohort reads like competition data, carries exact truth, and is reproducible."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from spine_seg import api
from spine_seg.core import geometry
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES, SeriesKind, normalize_condition, normalize_level
from spine_seg.core.labels import VERTEBRAE, spider_disc_label
from spine_seg.dicom import load_study, scan_folder
from spine_seg.synthetic import CohortConfig, generate_cohort
from spine_seg.synthetic import severity as sev
from spine_seg.synthetic.anatomy import CSF, FAT, NERVE
from spine_seg.synthetic.cohort import sample_anatomy
from spine_seg_cli.main import app


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "c"
    generate_cohort(out, CohortConfig(n_studies=4, seed=3, preview=True))
    return out


def _coords(cohort: Path) -> pd.DataFrame:
    df = pd.read_csv(cohort / "train_label_coordinates.csv", dtype={"study_id": str, "series_id": str})
    df["condition"] = df.condition.map(normalize_condition)
    df["level"] = df.level.map(normalize_level)
    return df


def test_layout_matches_the_competition(cohort: Path):
    for name in (
        "train.csv",
        "train_series_descriptions.csv",
        "train_label_coordinates.csv",
        "test_series_descriptions.csv",
        "sample_submission.csv",
        "cohort.json",
    ):
        assert (cohort / name).is_file(), name
    train = pd.read_csv(cohort / "train.csv")
    assert list(train.columns[1:]) == [f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS]
    assert set(train.iloc[:, 1:].stack().dropna().unique()) <= {"Normal/Mild", "Moderate", "Severe"}
    coords = pd.read_csv(cohort / "train_label_coordinates.csv")
    assert list(coords.columns) == ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    assert coords.condition.iloc[0][0].isupper() and "/" in coords.level.iloc[0]  # Kaggle's spelling
    meta = json.loads((cohort / "cohort.json").read_text())
    sub = pd.read_csv(cohort / "sample_submission.csv")
    assert len(sub) == 25 * len(meta["test_ids"])
    # ground truth of the test split is kept apart from test_images/
    assert (cohort / "truth" / "test_labels.csv").is_file()
    assert not list((cohort / "test_images").rglob("*.json"))
    for sid in meta["test_ids"]:
        assert (cohort / "test_images" / sid).is_dir()


def test_studies_ingest_like_real_ones(cohort: Path):
    desc = pd.read_csv(cohort / "train_series_descriptions.csv", dtype=str)
    studies = scan_folder(cohort / "train_images")
    assert len(studies) == desc.study_id.nunique()
    for study in studies:
        listed = desc[desc.study_id == study.study_id]
        # header-only inference (orientation + 'T1'/'T2') agrees with the CSV, as on real data
        for row in listed.itertuples():
            assert study.get_series(row.series_id).kind is SeriesKind.parse(row.series_description)
        truth = json.loads((cohort / "truth" / f"{study.study_id}.json").read_text())
        for s in truth["series"]:
            assert study.get_series(s["series_id"]).n_slices == sum(st["shape"][0] for st in s["stacks"])
        ds = pydicom.dcmread(study.series[0].stacks[0].slices[0].path, stop_before_pixels=True)
        assert "Modality" not in ds and ds.SOPInstanceUID.startswith(f"{study.study_id}.1.")
        assert ds.file_meta.TransferSyntaxUID.name == "RLE Lossless"


def _spider_mask_of(cohort: Path, study_id: str, tag: str) -> sitk.Image:
    overview = pd.read_csv(cohort / "spider" / "overview.csv", dtype={"synthetic_study_id": str})
    name = overview[
        (overview.synthetic_study_id == study_id) & overview.new_file_name.str.endswith(tag)
    ].new_file_name.item()
    return sitk.ReadImage(str(cohort / "spider" / "masks" / f"{name}.mha"))


def test_spinal_keypoints_lie_inside_their_disc(cohort: Path):
    coords = _coords(cohort)
    spinal = coords[coords.condition == "spinal_canal_stenosis"]
    assert len(spinal) == 5 * spinal.study_id.nunique() > 0
    for study_id, rows in spinal.groupby("study_id"):
        study = load_study(cohort / "train_images" / study_id)
        mask = _spider_mask_of(cohort, study_id, "_t2")
        arr = sitk.GetArrayFromImage(mask)
        for row in rows.itertuples():
            xyz = study.get_series(row.series_id).pixel_to_world(row.instance_number, row.x, row.y)
            i, j, k = mask.TransformPhysicalPointToIndex(tuple(float(v) for v in xyz))
            upper = VERTEBRAE[VERTEBRAE.index("L1") + LEVELS.index(row.level)]
            assert arr[k, j, i] == spider_disc_label(upper), (study_id, row.level)


def test_locate_takes_spinal_keypoints_to_the_labelled_axial_slice(cohort: Path):
    coords = _coords(cohort)
    n_checked = 0
    for study_id, rows in coords.groupby("study_id"):
        studies = scan_folder(cohort / "train_images" / study_id)
        sub = rows[rows.condition == "left_subarticular_stenosis"].set_index("level")
        for row in rows[rows.condition == "spinal_canal_stenosis"].itertuples():
            if row.level not in sub.index:
                continue  # the axial series does not reach this level (its grade is blank)
            result = api.locate(studies, row.series_id, row.instance_number, row.x, row.y)
            (axial,) = [t for t in result.targets if t.kind == SeriesKind.AXIAL_T2.value]
            assert abs(axial.hit.instance_number - int(sub.loc[row.level].instance_number)) <= 1
            n_checked += 1
    assert n_checked >= 10


def test_truth_landmarks_match_the_masks(cohort: Path):
    """Each truth disc centre falls in its disc label; the canal centre in the canal label."""
    meta = json.loads((cohort / "cohort.json").read_text())
    for study_id in meta["train_ids"]:
        truth = json.loads((cohort / "truth" / f"{study_id}.json").read_text())
        mask = _spider_mask_of(cohort, study_id, "_t2")
        arr = sitk.GetArrayFromImage(mask)
        for i_level, level in enumerate(LEVELS):
            i, j, k = mask.TransformPhysicalPointToIndex(tuple(truth["landmarks_lps_mm"][level]["disc_centre"]))
            if 0 <= k < arr.shape[0] and 0 <= j < arr.shape[1] and 0 <= i < arr.shape[2]:
                assert arr[k, j, i] == spider_disc_label(VERTEBRAE[2 + i_level])


def test_severity_frequencies_match_requested(tmp_path: Path):
    counts = sev.load_counts()
    p = sev.probabilities(counts)
    rng = np.random.default_rng(0)
    n = 3000
    draws = np.stack([sev.sample_severities(p, rng) for _ in range(n)])
    freq = np.stack([(draws == c).mean(axis=0) for c in range(3)], axis=-1)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 4.5 * se + 1e-9)
    # the study factor correlates levels: a severe L4/L5 canal makes a severe L3/L4 more likely
    a, b = draws[:, 0, 3] == 2, draws[:, 0, 2] == 2
    assert b[a].mean() > b[~a].mean()


def test_label_noise_flips_at_the_requested_rate():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, (20000,))
    noisy = sev.add_label_noise(truth, 0.2, rng)
    assert abs((noisy != truth).mean() - 0.2) < 0.015
    with pytest.raises(ValueError, match="label noise"):
        sev.add_label_noise(truth, 1.5, rng)


def test_bundled_priors_are_the_real_train_csv(shared_data: Path):
    bundled = sev.load_counts()
    real = sev.load_counts(shared_data / "rsna2024" / "train.csv")
    pd.testing.assert_frame_equal(bundled.reset_index(drop=True), real.reset_index(drop=True), check_dtype=False)


def _ap_extent(anat, s: float, v0: float, v1: float, w: float, tissues: tuple[int, ...]) -> float:
    v = np.arange(v0, v1, 0.1)
    pts = np.array([anat.to_world(s, vv, w) for vv in v])
    t, _ = anat.tissue(pts, want_labels=False)
    return float(np.isin(t, tissues).sum() * 0.1)


def test_severity_is_realised_as_measurable_narrowing():
    grades = {}
    for name, level in (("normal", 0), ("severe", 2)):
        s = np.zeros((len(CONDITIONS), len(LEVELS)), dtype=int)
        s[:, 3] = level  # every condition at L4/L5
        anat = sample_anatomy(np.random.default_rng(7), s)
        sd = anat.disc_centre_s("l4_l5")
        vc = anat.canal_centre_v(3)
        canal = _ap_extent(anat, sd, vc - 15, vc + 15, 0.0, (CSF, NERVE))
        wc = anat.canal_width_mm / 2
        recess = _ap_extent(anat, sd, vc - 15, vc + 15, wc - 3.0, (CSF, NERVE))
        fs, fv = anat.foramen_centre_s(3), anat.foramen_v(3)
        foramen = _ap_extent(anat, fs, fv - 8, fv + 8, wc + 6.5, (FAT, NERVE))
        grades[name] = (canal, recess, foramen)
    (c0, r0, f0), (c2, r2, f2) = grades["normal"], grades["severe"]
    assert c2 < 0.45 * c0 and r2 < 0.6 * r0 and f2 < 0.6 * f0, grades


def test_same_seed_same_bytes(tmp_path: Path):
    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    cfg = CohortConfig(n_studies=2, seed=11, test_fraction=0.5, preview=True)
    generate_cohort(tmp_path / "a", cfg)
    generate_cohort(tmp_path / "b", cfg)
    da, db = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert da == db and len(da) > 20
    generate_cohort(tmp_path / "c", CohortConfig(n_studies=2, seed=12, test_fraction=0.5))
    assert digest(tmp_path / "c") != {k: v for k, v in da.items() if not k.startswith("previews")}


def test_refuses_to_overwrite_what_is_not_a_cohort(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_cohort(tmp_path, CohortConfig(n_studies=1))
    with pytest.raises(FileExistsError, match="no cohort.json"):
        generate_cohort(tmp_path, CohortConfig(n_studies=1), overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_missing_and_extra_series_and_syntax(tmp_path: Path):
    out = tmp_path / "c"
    generate_cohort(
        out,
        CohortConfig(n_studies=3, seed=2, test_fraction=0, missing_series_rate=1.0, syntax="explicit", spider=False),
    )
    desc = pd.read_csv(out / "train_series_descriptions.csv", dtype=str)
    coords = _coords(out)
    for study_id, rows in desc.groupby("study_id"):
        truth = json.loads((out / "truth" / f"{study_id}.json").read_text())
        missing = SeriesKind.parse(truth["missing_series"])
        assert missing.value not in set(rows.series_description) and len(rows) == 2
        study = load_study(out / "train_images" / study_id)
        assert f"no {missing.value} series" in study.warnings
        kinds_with_points = {
            SeriesKind.parse(k)
            for k in rows.set_index("series_id")
            .loc[coords[coords.study_id == study_id].series_id.unique()]
            .series_description
        }
        assert missing not in kinds_with_points
    ds = pydicom.dcmread(next((out / "train_images").rglob("*.dcm")), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.name == "Explicit VR Little Endian"
    generate_cohort(
        out, CohortConfig(n_studies=2, seed=2, test_fraction=0, extra_series_rate=1.0, spider=False), overwrite=True
    )
    desc = pd.read_csv(out / "train_series_descriptions.csv", dtype=str)
    assert (desc.groupby("study_id").series_description.apply(lambda s: (s == "Axial T2").sum()) == 2).all()


def test_contrast_per_sequence(cohort: Path):
    """CSF is bright on T2 and dark on T1 relative to vertebral marrow, as in real studies."""
    meta = json.loads((cohort / "cohort.json").read_text())
    study_id = meta["train_ids"][0]
    truth = json.loads((cohort / "truth" / f"{study_id}.json").read_text())
    study = load_study(cohort / "train_images" / study_id)
    for kind, csf_brighter in ((SeriesKind.SAGITTAL_T1, False), (SeriesKind.SAGITTAL_T2, True)):
        series = study.series_of_kind(kind)[0]
        stack = series.stacks[0]
        vol = stack.load()

        def value(xyz, stack=stack, vol=vol):
            i, j, k = np.rint(geometry.world_to_voxel(stack.affine, xyz)).astype(int)
            return float(np.median(vol[k, j - 1 : j + 2, i - 1 : i + 2]))

        csf = value(truth["landmarks_lps_mm"]["l2_l3"]["canal_centre"])
        bone = value(truth["vertebra_centres_lps_mm"]["L3"])
        assert (csf > bone) == csf_brighter, (kind, csf, bone)


def test_preview_written(cohort: Path):
    meta = json.loads((cohort / "cohort.json").read_text())
    for sid in meta["train_ids"] + meta["test_ids"]:
        png = cohort / "previews" / f"{sid}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_synth_cli(tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "--studies", "2", "--out", str(tmp_path / "c"), "--seed", "4", "--no-spider"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 train + 1 test studies" in res.stdout
    res = runner.invoke(app, ["synth", "--studies", "1", "--out", str(tmp_path / "d"), "--axial", "sideways"])
    assert res.exit_code == 2 and "valid: ['blocks', 'stack', 'mixed']" in res.stderr
    res = runner.invoke(app, ["synth", "--studies", "1", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "--overwrite" in res.stderr


def test_all_severities_reachable():
    """Every severity occurs for every condition × level in what the generator samples with its bundled priors
    (the rarest, a severe L1/L2 subarticular stenosis, has p ≈ 0.001: 20 000 studies expect 20), both as the
    truth and through label noise: a sampler that could never give one of them fails here."""
    cfg = CohortConfig()
    p = sev.probabilities(sev.load_counts(cfg.priors_csv))
    assert p[..., 2].min() > 5 / 20_000  # else the sample below would be too small to show it
    rng = np.random.default_rng(0)
    truth = np.stack([sev.sample_severities(p, rng, cfg.correlation) for _ in range(20_000)])
    noisy = sev.add_label_noise(truth, 0.1, rng)
    for draws in (truth, noisy):
        for ci, condition in enumerate(CONDITIONS):
            for li, level in enumerate(LEVELS):
                seen = {SEVERITIES[v] for v in np.unique(draws[:, ci, li])}
                assert seen == {"normal_mild", "moderate", "severe"}, (condition, level, seen)


def test_every_keypoint_lies_inside_its_image(cohort: Path):
    coords = _coords(cohort)
    studies = {s.study_id: s for s in scan_folder(cohort / "train_images")}
    for row in coords.itertuples():
        stack, k = studies[row.study_id].get_series(row.series_id).find_instance(row.instance_number)
        info = stack.slices[k]
        assert 0 <= row.x < info.columns and 0 <= row.y < info.rows, row


def test_locate_cli_on_a_synthetic_keypoint(cohort: Path):
    """`spineseg locate --json` gives the labelled axial slice for a spinal keypoint, as the API does."""
    coords = _coords(cohort)
    sub = coords[coords.condition == "left_subarticular_stenosis"]
    row = coords[
        (coords.condition == "spinal_canal_stenosis")
        & coords.set_index(["study_id", "level"]).index.isin(sub.set_index(["study_id", "level"]).index)
    ].iloc[0]
    res = CliRunner().invoke(
        app,
        [
            "locate",
            str(cohort / "train_images" / row.study_id),
            "--series",
            row.series_id,
            "--instance",
            str(row.instance_number),
            "--x",
            str(row.x),
            "--y",
            str(row.y),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    target = int(sub[(sub.study_id == row.study_id) & (sub.level == row.level)].instance_number.item())
    desc = pd.read_csv(cohort / "train_series_descriptions.csv", dtype=str)
    axial_ids = set(desc[desc.series_description == "Axial T2"].series_id)
    (axial,) = [t for t in doc["targets"] if t["series_id"] in axial_ids]
    assert abs(axial["instance_number"] - target) <= 1
