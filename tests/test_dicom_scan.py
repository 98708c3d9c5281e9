from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SAG_IOP, make_study, ramp
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from spine_seg.core import geometry
from spine_seg.core.constants import SeriesKind
from spine_seg.dicom import NoImageSeriesError, PixelDataError, load_study, scan_folder
from spine_seg.dicom.write import WRITABLE_SYNTAXES, write_stack


def test_groups_study_series_and_oblique_blocks(synthetic_study: Path):
    study = load_study(synthetic_study)
    assert study.study_id == "777"
    assert {s.series_id: s.kind for s in study.series} == {
        "11": SeriesKind.SAGITTAL_T1,
        "12": SeriesKind.SAGITTAL_T2,
        "13": SeriesKind.AXIAL_T2,
    }
    axial = study.get_series("13")
    assert [st.n_slices for st in axial.stacks] == [4, 3]
    assert any("distinct geometries" in w for w in axial.warnings)
    assert any("instance numbers do not follow" in w for w in axial.warnings)
    assert study.warnings == ()


def test_slices_sorted_by_position_not_instance(synthetic_study: Path):
    axial = load_study(synthetic_study).get_series("13")
    for st in axial.stacks:
        pos = [s.position_mm for s in st.slices]
        assert pos == sorted(pos)
        vol = st.load()
        # the ramp encodes the written (positional) slice index as 100*k
        assert list((vol[:, 0, 0] // 100).astype(int)) == list(range(st.n_slices))


def test_stack_affine_reproduces_every_slice_position(synthetic_study: Path):
    study = load_study(synthetic_study)
    for series in study.series:
        for st in series.stacks:
            for k, s in enumerate(st.slices):
                np.testing.assert_allclose(geometry.voxel_to_world(st.affine, (0, 0, k)), s.ipp, atol=1e-4)
                np.testing.assert_allclose(
                    geometry.voxel_to_world(st.affine, (5, 7, k)), s.pixel_to_world(5, 7), atol=1e-4
                )


def test_pixel_to_world_and_locate_round_trip(synthetic_study: Path):
    study = load_study(synthetic_study)
    sag = study.get_series("12")
    st, k = sag.find_instance(3)
    xyz = sag.pixel_to_world(3, 10.0, 20.0)
    hit = sag.locate(xyz)
    assert (hit.instance_number, round(hit.x_px, 6), round(hit.y_px, 6), round(hit.distance_mm, 6)) == (3, 10, 20, 0)
    with pytest.raises(KeyError, match="no instance 99"):
        sag.find_instance(99)


def test_an_instance_number_two_slices_share_is_refused(tmp_path: Path):
    """Sagittal T2 instance 4 renumbered 3: the Python API refuses instance 3 with the project's usage error
    (``locate``, ``pixel_to_world``, ``find_instance`` alike) naming both files; as a KeyError too, a keypoint
    on it is dropped from a crop table with that message, as one on a missing instance is."""
    import pandas as pd

    from spine_seg import api
    from spine_seg.core.errors import UsageError
    from spine_seg.dicom import AmbiguousInstanceError
    from spine_seg.grading.crops import keypoint_crops

    study_dir = make_study(tmp_path)
    renumbered = study_dir / "12" / "4.dcm"
    ds = pydicom.dcmread(renumbered)
    ds.InstanceNumber = 3
    ds.save_as(renumbered)
    study = load_study(study_dir)
    sag = study.get_series("12")
    message = f"series 12: instance 3 is shared by 2 slices, .*3.dcm .*, {renumbered} .*must name one image"
    with pytest.raises(UsageError, match=message) as caught:
        api.locate([study], "12", 3, 10.0, 20.0)
    assert isinstance(caught.value, AmbiguousInstanceError) and isinstance(caught.value, KeyError)
    assert str(caught.value) == caught.value.args[0] and "\n" not in str(caught.value)
    for call in (lambda: sag.find_instance(3), lambda: sag.pixel_to_world(3, 10.0, 20.0)):
        with pytest.raises(AmbiguousInstanceError, match=message):
            call()
    assert sag.find_instance(2)[0].slices[sag.find_instance(2)[1]].instance_number == 2
    keypoints = pd.DataFrame(
        [{"study_id": "777", "series_id": "12", "instance_number": 3, "x": 10.0, "y": 20.0}]
    ).assign(condition="spinal_canal_stenosis", level="l3_l4")
    crops, warnings = keypoint_crops(study, keypoints)
    assert crops == {} and len(warnings) == 1 and "instance 3 is shared by 2 slices" in warnings[0]


def test_series_csv_overrides_and_missing_description(tmp_path: Path):
    study_dir = make_study(tmp_path, omit=("SeriesDescription", "SliceThickness"))
    study = load_study(study_dir)
    kinds = {s.series_id: s.kind for s in study.series}
    assert kinds["11"] is SeriesKind.UNKNOWN and kinds["13"] is SeriesKind.AXIAL_T2
    assert any("--series-csv" in w for w in study.get_series("11").warnings)
    assert study.get_series("11").stacks[0].slices[0].slice_thickness_mm is None
    csv = tmp_path / "series.csv"
    csv.write_text(
        "study_id,series_id,series_description\n777,11,Sagittal T1\n777,12,Sagittal T2/STIR\n777,13,Axial T2\n"
    )
    study = load_study(study_dir, csv)
    assert study.get_series("11").kind is SeriesKind.SAGITTAL_T1
    assert study.get_series("11").kind_evidence[0] == "series.csv: 'Sagittal T1'"


def test_series_csv_errors_name_the_file(tmp_path: Path, synthetic_study: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("study,series\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv.*lacks columns"):
        scan_folder(synthetic_study, bad)
    bad.write_text("study_id,series_id,series_description\n777,11,Coronal PD\n")
    with pytest.raises(ValueError, match="bad.csv: study 777 series 11: unknown series description"):
        scan_folder(synthetic_study, bad)


def test_acquisition_tags_tell_t1_from_t2(tmp_path: Path):
    for series_id, te in (("21", 12.0), ("22", 95.0)):
        aff = geometry.affine_from_headers((0, -60, 40), SAG_IOP, (0.8, 0.8), 4.0)
        write_stack(
            tmp_path / "s" / series_id,
            ramp((3, 16, 16), 1),
            aff,
            study_id="5",
            series_id=series_id,
            series_description="",
            extra={"EchoTime": te, "RepetitionTime": 600 if te < 50 else 3500},
        )
    study = load_study(tmp_path / "s")
    assert study.get_series("21").kind is SeriesKind.SAGITTAL_T1
    assert study.get_series("22").kind is SeriesKind.SAGITTAL_T2
    assert any("EchoTime 95 ms" in e for e in study.get_series("22").kind_evidence)


def _write_non_image(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.StudyInstanceUID = "777"
    ds.SeriesInstanceUID = "777.99"
    ds.Modality = "SR"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_bad_files_are_skipped_with_reasons(synthetic_study: Path, caplog):
    victim = synthetic_study / "12" / "2.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 300])  # truncated inside the pixel data
    (synthetic_study / "12" / "notes.txt").write_text("not dicom")
    (synthetic_study / "12" / "header_only.dcm").write_bytes(data[:200])  # truncated inside the header
    _write_non_image(synthetic_study / "report.dcm")
    study = load_study(synthetic_study)
    reasons = {p.path.name: p.reason for p in study.skipped}
    assert "truncated pixel data" in reasons["2.dcm"]
    assert reasons["notes.txt"].startswith("not DICOM")
    assert "header_only.dcm" in reasons
    assert "non-image DICOM" in reasons["report.dcm"]
    assert study.get_series("12").n_slices == 5
    assert "2.dcm" in caplog.text and "truncated" in caplog.text


def test_truncated_compressed_file_is_caught(tmp_path: Path):
    study_dir = make_study(tmp_path, syntax="rle")
    victim = study_dir / "13" / "6.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[:-40])
    study = load_study(study_dir)
    assert any("encapsulated" in s.reason for s in study.skipped)


def test_empty_and_useless_folders_fail_clearly(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoImageSeriesError, match=r"empty: no usable image series; found 0 files"):
        scan_folder(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x")
    _write_non_image(junk / "sr.dcm")
    with pytest.raises(
        NoImageSeriesError, match=r"junk: no usable image series; found 2 files: .*non-image DICOM.*not DICOM"
    ):
        scan_folder(junk)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_folder(tmp_path / "nowhere")


def test_two_studies_in_one_folder(tmp_path: Path):
    make_study(tmp_path / "mixed", "801")
    make_study(tmp_path / "mixed", "802")
    studies = scan_folder(tmp_path / "mixed")
    assert [s.study_id for s in studies] == ["801", "802"]
    with pytest.raises(NoImageSeriesError, match="expected one study, found 2"):
        load_study(tmp_path / "mixed")


def test_repeated_positions_and_gaps_split_stacks(tmp_path: Path):
    aff = geometry.affine_from_headers((0, -60, 40), SAG_IOP, (0.8, 0.8), 4.0)
    folder = tmp_path / "s" / "31"
    write_stack(folder, ramp((4, 16, 16), 1), aff, study_id="9", series_id="31")
    write_stack(folder, ramp((2, 16, 16), 2), aff, study_id="9", series_id="31", first_instance=5)  # repeat
    far = aff.copy()
    far[:3, 3] += 30 * geometry.slice_normal(SAG_IOP)
    write_stack(folder, ramp((3, 16, 16), 3), far, study_id="9", series_id="31", first_instance=7)  # gap
    series = load_study(tmp_path / "s").get_series("31")
    assert sorted(st.n_slices for st in series.stacks) == [2, 3, 4]
    assert any("repeat positions" in w for w in series.warnings)
    assert any("gap jumps" in w for w in series.warnings)


def test_rescale_slope_intercept_applied(tmp_path: Path):
    aff = geometry.affine_from_headers((0, -60, 40), SAG_IOP, (0.8, 0.8), 4.0)
    vol = ramp((2, 8, 8), 0)
    write_stack(
        tmp_path / "s" / "1",
        vol,
        aff,
        study_id="4",
        series_id="1",
        extra={"RescaleSlope": "2.5", "RescaleIntercept": "-10"},
    )
    st = load_study(tmp_path / "s").series[0].stacks[0]
    np.testing.assert_allclose(st.load(), vol.astype(np.float32) * 2.5 - 10)


@pytest.mark.parametrize("syntax", ["rle", "jpeg-ls", "jpeg2000"])
def test_compressed_syntaxes_written_and_decoded(tmp_path: Path, syntax: str):
    """Each file is written in the syntax asked for (read back from its file meta, and encapsulated), and
    decodes to the same pixels as the uncompressed study: a writer that ignored ``syntax`` would fail here."""
    study_dir = make_study(tmp_path, syntax=syntax)
    plain = load_study(make_study(tmp_path / "plain"))
    study = load_study(study_dir)
    files = sorted(study_dir.rglob("*.dcm"))
    assert len(files) == 19
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == WRITABLE_SYNTAXES[syntax], path
        assert ds.file_meta.TransferSyntaxUID.is_compressed and ds.file_meta.TransferSyntaxUID.is_encapsulated
    assert {s.transfer_syntax for series in study.series for st in series.stacks for s in st.slices} == {
        str(WRITABLE_SYNTAXES[syntax])
    }
    for sid in ("11", "13"):
        for a, b in zip(study.get_series(sid).stacks, plain.get_series(sid).stacks, strict=True):
            np.testing.assert_array_equal(a.load(), b.load())


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_implicit.dcm",
        "MR_small_expb.dcm",
    ],
)
def test_pydicom_reference_files_decode(tmp_path: Path, name: str):
    from pydicom.data import get_testdata_file  # one file at a time: the plural form tries to download

    ref = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    folder = tmp_path / "study" / "1"
    folder.mkdir(parents=True)
    shutil.copy(get_testdata_file(name), folder / name)
    study = load_study(tmp_path / "study")
    (stack,) = study.series[0].stacks
    assert stack.slices[0].transfer_syntax == str(pydicom.dcmread(folder / name).file_meta.TransferSyntaxUID)
    np.testing.assert_array_equal(stack.load()[0], ref.astype(np.float32))


def test_jpeg_lossless_from_simpleitk(tmp_path: Path):
    """JPEG Lossless (process 14), the common archive syntax, decoded through python-gdcm."""
    sitk = pytest.importorskip("SimpleITK")
    arr = ramp((1, 24, 20), 4)[0]
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing((0.7, 0.7))
    img.SetMetaData("0008|0016", "1.2.840.10008.5.1.4.1.1.4")  # MR Image Storage: GDCM then writes geometry
    img.SetMetaData("0008|0060", "MR")
    img.SetMetaData("0020|0032", "-10\\20\\30")
    img.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetCompressor("JPEG")
    writer.SetUseCompression(True)
    folder = tmp_path / "study" / "jpeg"
    folder.mkdir(parents=True)
    writer.SetFileName(str(folder / "1.dcm"))
    writer.Execute(img)
    ds = pydicom.dcmread(folder / "1.dcm", stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.name.startswith("JPEG Lossless")
    st = load_study(tmp_path / "study").series[0].stacks[0]
    np.testing.assert_array_equal(st.load()[0], arr.astype(np.float32))


def test_undecodable_pixels_name_the_file(tmp_path: Path):
    study_dir = make_study(tmp_path)
    st = load_study(study_dir).get_series("11").stacks[0]
    victim = st.slices[0].path
    ds = pydicom.dcmread(victim)
    ds.Rows = 41  # header no longer matches the pixel payload
    ds.save_as(victim)
    with pytest.raises(PixelDataError, match=str(victim.name)):
        st.load()
