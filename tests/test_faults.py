"""The fault corpus: damaged studies, stray files, bad CSVs, bad bundles, full disks and killed batches.

Every case is generated here with pydicom from the small synthetic study of ``conftest.make_study`` and run
through the CLI. Each asserts the exact exit code (README: 0 all done, 1 some studies failed and the rest
written, 2 nothing could start), a message naming the file or the problem, and that no traceback escaped.
``predict`` runs with :class:`StubPredictor` (the real batch, discovery, ingestion, pixel decoding, budget and
writers; no nnU-Net or timm), so the whole corpus takes seconds; the real models run in test_pipeline.py.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
from conftest import make_study
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from typer.testing import CliRunner

from spine_seg.core.checksums import sha256_file
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
from spine_seg.core.labels import SEG_LABELS
from spine_seg.dicom import load_study
from spine_seg.grading.metric import uniform_submission
from spine_seg.inference import batch, outputs, predictor
from spine_seg.inference.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST
from spine_seg.report.result import StudyResult
from spine_seg_cli.main import app

runner = CliRunner()
TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------------
# the stand-in predictor and bundle


class StubPredictor:
    """The real stages up to pixels (ingest, the resampling budget, decoding the Sagittal T2 stack), then the
    prior's rows: what the batch, its writers and its error handling need, without nnU-Net or timm."""

    constructed = 0

    def __init__(
        self,
        bundle: Any = None,
        device: str = "cpu",
        *,
        target_spacing: tuple[float, ...] = (0.5, 0.5),
        cross_check: str = "auto",
    ):
        StubPredictor.constructed += 1
        self.cross_check = cross_check
        self.bundle = (
            bundle
            if bundle is not None and not isinstance(bundle, (str, Path))
            else SimpleNamespace(name="stub", manifest={"files": {"x": {"size": 1, "sha256": "0"}}})
        )
        self.device = device
        self.load_seconds = 0.0
        manager = SimpleNamespace(spacing=target_spacing)
        self.seg_model = SimpleNamespace(predictor=SimpleNamespace(configuration_manager=manager))

    def prior_rows(self, study_id: str) -> pd.DataFrame:
        return uniform_submission([study_id])

    def predict_with_study(self, path, series_csv=None, progress=None, study=None):
        timings: dict[str, float] = {}
        folder = Path(path)
        with predictor._stage("ingest", timings, progress, folder.name):
            if study is None:
                study = load_study(folder, series_csv)
        _, stack = predictor._segmentation_stack(study)
        if stack is not None:
            with predictor._stage("segment", timings, progress, folder.name):
                predictor.check_segmentation_budget(self.seg_model, stack)
                stack.load()
        sub = uniform_submission([study.study_id])
        result = StudyResult(
            study_id=study.study_id,
            folder=folder,
            submission=sub,
            sources={},
            landmarks=None,
            projection=None,
            segmentation=None,
            segmentation_stack=None,
            crops={},
            series={},
            fallbacks=(),
            warnings=tuple(f"skipped file {s.path.name}: {s.reason}" for s in study.skipped),
            timings_s=timings,
            versions={"spineseg": "test"},
            bundle={"name": self.bundle.name},
        )
        return result, study


def make_bundle(root: Path, tag: str = "a", manifest_override: Any = None) -> Path:
    """A bundle folder that passes every check of ``load_bundle`` (its models are never loaded here)."""
    seg = root / "segmentation" / "nnUNetTrainer__nnUNetPlans__2d"
    seg.mkdir(parents=True)
    (seg / "dataset.json").write_text(json.dumps({"labels": SEG_LABELS}))
    (root / "grading").mkdir()
    (root / "grading" / "ensemble.json").write_text(json.dumps({"tag": tag}))
    files = {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "name": f"fake-{tag}",
        "labels": {"conditions": list(CONDITIONS), "levels": list(LEVELS), "severities": list(SEVERITIES)},
        "segmentation": {"folder": seg.relative_to(root).as_posix(), "folds": [0], "labels": SEG_LABELS},
        "grading": {"ensemble": "grading/ensemble.json"},
        "files": files,
    }
    doc = manifest_override(manifest) if manifest_override is not None else manifest
    (root / MANIFEST).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return root


@pytest.fixture()
def stub(monkeypatch: pytest.MonkeyPatch):
    """``spineseg predict`` with :class:`StubPredictor` in place of the models."""
    StubPredictor.constructed = 0
    monkeypatch.setattr(predictor, "Predictor", StubPredictor)
    return StubPredictor


# ---------------------------------------------------------------------------------------------------------
# damaging DICOM


def set_raw(path: Path, **tags: str | None) -> Path:
    """Rewrite tags of a file with exactly these value strings (None deletes the tag), bypassing pydicom's
    validation: how a damaged archive's bytes look."""
    ds = pydicom.dcmread(path)
    for keyword, text in tags.items():
        tag = Tag(tag_for_keyword(keyword))
        if text is None:
            if tag in ds:
                del ds[tag]
            continue
        raw = text.encode("latin-1")
        raw += b" " * (len(raw) % 2)
        ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    ds.save_as(path)
    return path


def t2_file(study: Path, k: int = 2) -> Path:
    return sorted((study / "12").glob("*.dcm"), key=lambda p: int(p.stem))[k]


def deflate(path: Path) -> Path:
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def undecodable(path: Path) -> Path:
    """Well-formed encapsulated JPEG 2000 fragments holding garbage: passes the scan, fails decoding."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.90")
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"garbage!" * 8])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def multiframe(path: Path) -> Path:
    return set_raw(path, NumberOfFrames="3")


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:-700])
    return path


def dicomdir_like(path: Path) -> Path:
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------------------------------------------------
# 1. one damaged file in a study: skipped with one line naming file, tag and value (inspect exits 0)


@dataclass(frozen=True)
class HeaderCase:
    id: str
    damage: Callable[[Path], Any]
    reason: str  # must appear in the skip reason (the tag and its problem)
    skipped: bool = True


HEADER_CASES = [
    HeaderCase("spacing-inf", lambda p: set_raw(p, PixelSpacing="inf\\0.7"), "PixelSpacing = 'inf\\\\0.7': not finite"),
    HeaderCase("spacing-nan", lambda p: set_raw(p, PixelSpacing="nan\\nan"), "PixelSpacing = 'nan\\\\nan': not finite"),
    HeaderCase(
        "spacing-zero", lambda p: set_raw(p, PixelSpacing="0\\0"), "PixelSpacing = '0\\\\0': outside the plausible"
    ),
    HeaderCase("spacing-tiny", lambda p: set_raw(p, PixelSpacing="0.001\\0.001"), "outside the plausible 0.05–20 mm"),
    HeaderCase(
        "spacing-decimal-slip", lambda p: set_raw(p, PixelSpacing="75.8\\75.8"), "PixelSpacing = '75.8\\\\75.8'"
    ),
    HeaderCase("spacing-negative", lambda p: set_raw(p, PixelSpacing="-0.8\\0.7"), "outside the plausible"),
    HeaderCase(
        "spacing-one-value", lambda p: set_raw(p, PixelSpacing="0.8"), "PixelSpacing = '0.8': 1 values, 2 expected"
    ),
    HeaderCase("spacing-three-values", lambda p: set_raw(p, PixelSpacing="0.8\\0.7\\1"), "3 values, 2 expected"),
    HeaderCase(
        "spacing-text", lambda p: set_raw(p, PixelSpacing="abc\\0.7"), "PixelSpacing = 'abc\\\\0.7': not a number"
    ),
    HeaderCase("spacing-missing", lambda p: set_raw(p, PixelSpacing=None), "missing PixelSpacing"),
    HeaderCase(
        "iop-nan", lambda p: set_raw(p, ImageOrientationPatient="nan\\1\\0\\0\\0\\-1"), "ImageOrientationPatient = 'nan"
    ),
    HeaderCase(
        "iop-not-orthogonal", lambda p: set_raw(p, ImageOrientationPatient="0\\1\\0\\0\\0.6\\-0.8"), "not orthogonal"
    ),
    HeaderCase(
        "iop-not-unit", lambda p: set_raw(p, ImageOrientationPatient="0\\2\\0\\0\\0\\-2"), "has length 2, not 1"
    ),
    HeaderCase("iop-parallel", lambda p: set_raw(p, ImageOrientationPatient="0\\1\\0\\0\\1\\0"), "not orthogonal"),
    HeaderCase("iop-zeros", lambda p: set_raw(p, ImageOrientationPatient="0\\0\\0\\0\\0\\0"), "has length 0, not 1"),
    HeaderCase(
        "iop-five-values", lambda p: set_raw(p, ImageOrientationPatient="0\\1\\0\\0\\0"), "5 values, 6 expected"
    ),
    HeaderCase("iop-inf", lambda p: set_raw(p, ImageOrientationPatient="0\\inf\\0\\0\\0\\-1"), "not finite"),
    HeaderCase("iop-missing", lambda p: set_raw(p, ImageOrientationPatient=None), "missing ImageOrientationPatient"),
    HeaderCase(
        "ipp-nan",
        lambda p: set_raw(p, ImagePositionPatient="nan\\-60\\40"),
        "ImagePositionPatient = 'nan\\\\-60\\\\40': not finite",
    ),
    HeaderCase("ipp-inf", lambda p: set_raw(p, ImagePositionPatient="-12.5\\-inf\\40"), "not finite"),
    HeaderCase("ipp-two-values", lambda p: set_raw(p, ImagePositionPatient="-12.5\\-60"), "2 values, 3 expected"),
    HeaderCase("ipp-absurd", lambda p: set_raw(p, ImagePositionPatient="1e9\\-60\\40"), "beyond ±100000 mm"),
    HeaderCase("ipp-text", lambda p: set_raw(p, ImagePositionPatient="a\\b\\c"), "not a number"),
    HeaderCase("ipp-missing", lambda p: set_raw(p, ImagePositionPatient=None), "missing ImagePositionPatient"),
    HeaderCase("rows-zero", lambda p: set_raw(p, Rows=None), "missing Rows"),
    HeaderCase("multi-frame", multiframe, "multi-frame DICOM (3 frames)"),
    HeaderCase("frames-text", lambda p: set_raw(p, NumberOfFrames="x"), "NumberOfFrames = 'x': not a number"),
    HeaderCase("slope-nan", lambda p: set_raw(p, RescaleSlope="nan"), "RescaleSlope = 'nan': not finite"),
    HeaderCase("intercept-inf", lambda p: set_raw(p, RescaleIntercept="inf"), "RescaleIntercept = 'inf': not finite"),
    HeaderCase("thickness-nan", lambda p: set_raw(p, SliceThickness="nan"), "SliceThickness = 'nan': not finite"),
    HeaderCase("truncated-pixels", truncate, "truncated pixel data"),
    HeaderCase("zero-bytes", lambda p: p.write_bytes(b""), "not DICOM"),
    HeaderCase("junk-bytes", lambda p: p.write_bytes(os.urandom(2000)), "not DICOM"),
    HeaderCase("dicomdir-inside-series", dicomdir_like, "DICOMDIR"),
    HeaderCase("instance-number-A1", lambda p: set_raw(p, InstanceNumber="A1"), "", skipped=False),
    HeaderCase("instance-number-blank", lambda p: set_raw(p, InstanceNumber=""), "", skipped=False),
    HeaderCase("echo-time-text", lambda p: set_raw(p, EchoTime="long"), "", skipped=False),
    HeaderCase("deflated-syntax", deflate, "", skipped=False),
]


def _no_traceback(res) -> None:
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("case", HEADER_CASES, ids=lambda c: c.id)
def test_damaged_file_is_skipped_with_its_reason(tmp_path: Path, case: HeaderCase):
    study = make_study(tmp_path)
    target = t2_file(study)
    case.damage(target)
    res = runner.invoke(app, ["inspect", str(study), "--json"])
    _no_traceback(res)
    assert res.exit_code == 0, res.output
    (doc,) = _strict_json(res.stdout)["studies"]
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    if case.skipped:
        assert target.name in reasons and Path(doc["skipped"][0]["path"]).parent.name == "12", reasons
        assert case.reason in reasons[target.name], reasons[target.name]
        assert "\n" not in reasons[target.name]
    else:
        assert reasons == {}
        t2 = {s["series_id"]: s for s in doc["series"]}["12"]
        assert t2["n_slices"] == 6
        if case.id == "instance-number-A1":
            assert any("InstanceNumber = 'A1' is not an integer" in w for w in t2["warnings"])
        if case.id == "deflated-syntax":  # decoded, not "no pixel data"
            s = load_study(study).get_series("12")
            assert s.stacks[0].load().shape == (6, 40, 32)


def test_every_file_damaged_refuses_the_study(tmp_path: Path):
    study = make_study(tmp_path)
    for p in study.rglob("*.dcm"):
        set_raw(p, PixelSpacing="inf\\inf")
    res = runner.invoke(app, ["inspect", str(study)])
    _no_traceback(res)
    assert res.exit_code == 2 and "no usable image series" in res.stderr and "invalid PixelSpacing" in res.stderr


# ---------------------------------------------------------------------------------------------------------
# 2. study discovery: predict over folders as archives hold them


@dataclass(frozen=True)
class LayoutCase:
    id: str
    build: Callable[[Path], Path]  # returns the INPUT
    studies: tuple[str, ...]  # expected output folder names
    warning: str = ""


def _two(root: Path) -> Path:
    make_study(root, "101")
    make_study(root, "102")
    return root


def _flatten(study: Path) -> Path:
    for p in list(study.rglob("*.dcm")):
        p.rename(study / f"{p.parent.name}_{p.name}")
    for d in [d for d in study.iterdir() if d.is_dir()]:
        d.rmdir()
    return study


def _stray(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        _two(root)
        (root / name).write_bytes(data)
        return root

    return build


def _stray_one_down(root: Path) -> Path:
    _two(root)
    (root / "101" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 200)
    (root / "101" / "README.txt").write_text("scanned 2019")
    return root


def _dicomdir_at_root(root: Path) -> Path:
    _two(root)
    shutil.copy(t2_file(root / "101"), root / "DICOMDIR")
    dicomdir_like(root / "DICOMDIR")
    return root


def _dicomdir_renamed(root: Path) -> Path:
    _two(root)
    shutil.copy(t2_file(root / "101"), root / "index.dcm")
    dicomdir_like(root / "index.dcm")
    return root


def _flat_among_nested(root: Path) -> Path:
    _two(root)
    _flatten(make_study(root, "103"))
    return root


def _all_flat(root: Path) -> Path:
    _flatten(make_study(root, "101"))
    _flatten(make_study(root, "102"))
    return root


def _one_flat_study_in_folder(root: Path) -> Path:
    _flatten(make_study(root, "101"))
    return root


def _symlinked_series(root: Path) -> Path:
    study = make_study(root / "store", "101")
    inp = root / "in" / "101"
    inp.mkdir(parents=True)
    for d in study.iterdir():
        (inp / d.name).symlink_to(d, target_is_directory=True)
    return root / "in"


def _symlink_loop(root: Path) -> Path:
    _two(root / "in")
    (root / "in" / "101" / "12" / "loop").symlink_to(root / "in" / "101", target_is_directory=True)
    return root / "in"


def _duplicate_uid(root: Path) -> Path:
    make_study(root, "101")
    shutil.copytree(root / "101", root / "101_copy")
    return root


def _empty_and_readme_folders(root: Path) -> Path:
    _two(root)
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "README.md").write_text("x")
    return root


LAYOUT_CASES = [
    LayoutCase("thumbs-db-at-root", _stray("Thumbs.db", b"\xd0\xcf\x11\xe0" + b"\0" * 100), ("101", "102")),
    LayoutCase("readme-at-root", _stray("README.txt", b"test images\n"), ("101", "102")),
    LayoutCase("ds-store-at-root", _stray(".DS_Store", b"\0\0\0\1Bud1"), ("101", "102")),
    LayoutCase("stray-files-one-down", _stray_one_down, ("101", "102")),
    LayoutCase("dicomdir-at-root", _dicomdir_at_root, ("101", "102")),
    LayoutCase("dicomdir-under-another-name", _dicomdir_renamed, ("101", "102")),
    LayoutCase("flat-study-among-nested", _flat_among_nested, ("101", "102", "103")),
    LayoutCase("all-studies-flat", _all_flat, ("101", "102")),
    LayoutCase("one-flat-study-in-a-folder", _one_flat_study_in_folder, ("101",)),
    LayoutCase("symlinked-series-folders", _symlinked_series, ("101",)),
    LayoutCase("symlink-loop", _symlink_loop, ("101", "102")),
    LayoutCase("same-study-two-folders", _duplicate_uid, ("101", "101_copy"), "StudyInstanceUID 101 is in 2 folders"),
    LayoutCase("empty-and-readme-folders", _empty_and_readme_folders, ("101", "102"), "without DICOM images ignored"),
    LayoutCase("single-study-given", lambda root: make_study(root, "101"), ("101",)),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda c: c.id)
def test_discovery_matches_real_folders(tmp_path: Path, stub, case: LayoutCase):
    inp = case.build(tmp_path / "input")
    bundle = make_bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["predict", str(inp), "--model", str(bundle), "--out", str(out), "--no-progress", "--no-report", "--json"]
    )
    _no_traceback(res)
    assert res.exit_code == 0, res.output
    summary = _strict_json(res.stdout)
    assert [o["study"] for o in summary["outcomes"]] == list(case.studies)
    sub = pd.read_csv(out / "submission.csv", dtype={"row_id": str})
    assert len(sub) == 25 * len(case.studies)
    if case.warning:
        assert case.warning in res.stderr
    if case.id == "same-study-two-folders":  # both predicted, each under its folder name
        assert sub.row_id.str.startswith("101_copy_").sum() == 25
        assert _strict_json((out / "101_copy" / "result.json").read_text())["study_id"] == "101_copy"
    if case.id == "symlinked-series-folders":
        assert _strict_json((out / "101" / "result.json").read_text())["warnings"] == []


# ---------------------------------------------------------------------------------------------------------
# 3. predict: inputs, options, bundles and output folders; each with its exit code and message


@dataclass(frozen=True)
class PredictCase:
    id: str
    code: int
    message: str  # in stderr ("" = none required)
    build: Callable[[Path], dict[str, Any]] = field(default=lambda root: {})
    models_load: bool = True  # False: refused before any model would load


def _args(root: Path, **over: Any) -> dict[str, Any]:
    inp = root / "input"
    if not inp.exists():
        _two(inp)
    return {"input": inp, "model": root / "bundle", "out": root / "out", "csv": None, "extra": [], **over}


def _csv(root: Path, data: bytes | str, name: str = "series.csv", encoding: str = "utf-8") -> Path:
    path = root / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


GOOD_CSV = (
    "study_id,series_id,series_description\n101,11,Sagittal T1\n101,12,Sagittal T2/STIR\n101,13,Axial T2\n"
    "102,11,Sagittal T1\n102,12,Sagittal T2/STIR\n102,13,Axial T2\n"
)


def _latin1_csv(root: Path) -> dict:
    text = GOOD_CSV.replace("study_id,series_id,series_description", "study_id,series_id,series_description,note")
    text = text.replace("T1\n", "T1,r\xe9sum\xe9\n", 1)
    return _args(root, csv=_csv(root, text, encoding="latin-1"))


def _one_bad_study(root: Path) -> dict:
    a = _args(root)
    bad = a["input"] / "103" / "12"
    bad.mkdir(parents=True)
    (bad / "1.dcm").write_bytes(b"\0" * 300)
    return a


def _inf_spacing_study(root: Path) -> dict:
    a = _args(root)
    for p in (a["input"] / "102").rglob("*.dcm"):
        set_raw(p, PixelSpacing="inf\\inf")
    return a


def _undecodable_t2(root: Path) -> dict:
    a = _args(root)
    for p in (a["input"] / "102" / "12").glob("*.dcm"):
        undecodable(p)
    return a


def _instance_a1(root: Path) -> dict:
    a = _args(root)
    set_raw(t2_file(a["input"] / "102"), InstanceNumber="A1")
    return a


def _bad_manifest(override: Any) -> Callable[[Path], dict]:
    def build(root: Path) -> dict:
        shutil.rmtree(root / "bundle")
        make_bundle(root / "bundle", manifest_override=override)
        return _args(root)

    return build


def _truncated_bundle_file(root: Path) -> dict:
    p = root / "bundle" / "grading" / "ensemble.json"
    p.write_text(p.read_text()[:-3])
    return _args(root)


def _out_is_file(root: Path) -> dict:
    (root / "out.txt").write_text("x")
    return _args(root, out=root / "out.txt")


def _out_under_file(root: Path) -> dict:
    (root / "f").write_text("x")
    return _args(root, out=root / "f" / "out")


def _input_is_file(root: Path) -> dict:
    (root / "in.dcm").write_bytes(b"x")
    return _args(root, input=root / "in.dcm")


def _input_junk_only(root: Path) -> dict:
    (root / "junk").mkdir()
    (root / "junk" / "a.txt").write_text("x")
    (root / "junk" / "Thumbs.db").write_bytes(b"\0" * 10)
    return _args(root, input=root / "junk")


def _input_empty(root: Path) -> dict:
    (root / "empty").mkdir()
    return _args(root, input=root / "empty")


def _rebuild_bundle(root: Path) -> None:
    shutil.rmtree(root / "bundle")
    make_bundle(root / "bundle")


PREDICT_CASES = [
    PredictCase("all-good", 0, ""),
    PredictCase("one-study-unreadable", 1, "failed 103 (ingest)", _one_bad_study),
    PredictCase("inf-spacing-in-every-file-of-a-study", 1, "failed 102 (ingest)", _inf_spacing_study),
    PredictCase("undecodable-pixels", 1, "failed 102 (segment)", _undecodable_t2),
    PredictCase("instance-number-A1", 0, "", _instance_a1),
    PredictCase(
        "csv-wrong-columns",
        2,
        "series.csv: series descriptions CSV lacks columns",
        lambda r: _args(r, csv=_csv(r, "study,series\n1,2\n")),
        models_load=False,
    ),
    PredictCase("csv-utf16", 0, "", lambda r: _args(r, csv=_csv(r, GOOD_CSV, encoding="utf-16"))),
    PredictCase("csv-utf16-le-no-bom", 0, "", lambda r: _args(r, csv=_csv(r, GOOD_CSV, encoding="utf-16-le"))),
    PredictCase("csv-utf8-bom", 0, "", lambda r: _args(r, csv=_csv(r, codecs.BOM_UTF8 + GOOD_CSV.encode()))),
    PredictCase("csv-latin1", 0, "", _latin1_csv),
    PredictCase(
        "csv-binary",
        2,
        "series.csv: binary content",
        lambda r: _args(r, csv=_csv(r, b"\x89PNG\0\0\x01\x02" * 40)),
        models_load=False,
    ),
    PredictCase("csv-empty", 2, "series.csv: empty file", lambda r: _args(r, csv=_csv(r, b"")), models_load=False),
    PredictCase(
        "csv-header-only",
        2,
        "series.csv: series descriptions CSV has no rows",
        lambda r: _args(r, csv=_csv(r, "study_id,series_id,series_description\n")),
        models_load=False,
    ),
    PredictCase(
        "csv-unknown-description",
        2,
        "unknown series description 'Coronal PD'",
        lambda r: _args(r, csv=_csv(r, "study_id,series_id,series_description\n101,11,Coronal PD\n")),
        models_load=False,
    ),
    PredictCase("csv-is-a-folder", 2, "--series-csv: no such file", lambda r: _args(r, csv=r), models_load=False),
    PredictCase(
        "csv-missing", 2, "--series-csv: no such file", lambda r: _args(r, csv=r / "nope.csv"), models_load=False
    ),
    PredictCase("bundle-missing", 2, "no bundle", lambda r: _args(r, model=r / "nope"), models_load=False),
    PredictCase(
        "bundle-manifest-list", 2, "a JSON list, not an object", _bad_manifest(lambda m: [m]), models_load=False
    ),
    PredictCase(
        "bundle-manifest-not-json", 2, "not valid JSON", _bad_manifest(lambda m: "{not json"), models_load=False
    ),
    PredictCase(
        "bundle-manifest-segmentation-list",
        2,
        "manifest.json",
        _bad_manifest(lambda m: {**m, "segmentation": ["x"]}),
        models_load=False,
    ),
    PredictCase(
        "bundle-manifest-files-list",
        2,
        "manifest.json",
        _bad_manifest(lambda m: {**m, "files": ["x"]}),
        models_load=False,
    ),
    PredictCase(
        "bundle-newer-format",
        2,
        "bundle format version 99",
        _bad_manifest(lambda m: {**m, "format_version": 99}),
        models_load=False,
    ),
    PredictCase("bundle-file-truncated", 2, "truncated copy", _truncated_bundle_file, models_load=False),
    PredictCase(
        "device-unknown",
        2,
        "--device: unknown value 'tpu'",
        lambda r: _args(r, extra=["--device", "tpu"]),
        models_load=False,
    ),
    PredictCase("out-is-a-file", 2, "out.txt: is a file, not a folder", _out_is_file, models_load=False),
    PredictCase("out-under-a-file", 2, "is a file, so the folder cannot be made", _out_under_file, models_load=False),
    PredictCase("input-is-a-file", 2, "not a file", _input_is_file, models_load=False),
    PredictCase("input-missing", 2, "no such folder", lambda r: _args(r, input=r / "nowhere"), models_load=False),
    PredictCase("input-empty", 2, "empty folder", _input_empty, models_load=False),
    PredictCase("input-without-dicom", 2, "no DICOM files among its 2 files", _input_junk_only, models_load=False),
]


def _invoke_predict(a: dict[str, Any], *more: str):
    args = [
        "predict",
        str(a["input"]),
        "--model",
        str(a["model"]),
        "--out",
        str(a["out"]),
        "--no-progress",
        "--no-report",
        *a["extra"],
        *more,
    ]
    if a["csv"] is not None:
        args += ["--series-csv", str(a["csv"])]
    return runner.invoke(app, args)


@pytest.mark.parametrize("case", PREDICT_CASES, ids=lambda c: c.id)
def test_predict_fault(tmp_path: Path, stub, case: PredictCase):
    make_bundle(tmp_path / "bundle")
    a = {**_args(tmp_path), **case.build(tmp_path)}
    res = _invoke_predict(a)
    _no_traceback(res)
    assert res.exit_code == case.code, res.output
    if case.message:
        assert case.message in res.stderr, res.stderr
        assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error:")]) <= 1
    assert (stub.constructed > 0) == case.models_load
    if case.code == 2:
        assert not (a["out"] / "submission.csv").exists()
        if case.id not in ("out-is-a-file", "out-under-a-file"):
            assert not a["out"].exists()
    else:  # 0 or 1: a complete submission, and errors.csv exactly when something failed
        sub = pd.read_csv(a["out"] / "submission.csv", dtype={"row_id": str})
        n = len([p for p in a["input"].iterdir() if p.is_dir()])
        assert len(sub) == 25 * n and np.allclose(sub[list(SEVERITIES)].sum(axis=1), 1.0)
        assert (a["out"] / "errors.csv").exists() == (case.code == 1)
        if case.code == 1:
            errors = pd.read_csv(a["out"] / "errors.csv", dtype=str)
            assert len(errors) == 1 and errors.error[0] and errors.stage[0] in predictor.STAGES
        assert not [p for p in a["out"].rglob(".*")], "temporary or reserve files left behind"


def test_resampling_over_budget_is_refused_before_allocation(tmp_path: Path, stub, monkeypatch: pytest.MonkeyPatch):
    make_bundle(tmp_path / "bundle")
    a = _args(tmp_path)
    monkeypatch.setenv("SPINESEG_MAX_RESAMPLED_VOXELS", "5000")  # the 6×40×32 stack at 0.5 mm: 6×64×45 voxels
    res = _invoke_predict(a)
    _no_traceback(res)
    assert res.exit_code == 1 and "over the budget of 5e+03" in res.stderr and "failed 101 (segment)" in res.stderr


# ---------------------------------------------------------------------------------------------------------
# 4. output folder faults: a full disk, a read-only folder, and a killed batch


def _enospc_on(monkeypatch: pytest.MonkeyPatch, should_fail: Callable[[Path], bool]) -> list[Path]:
    """Patch the atomic text writer the batch uses so that chosen files fail as on a full disk."""
    real = outputs.atomic_write_text
    failed: list[Path] = []

    def writer(path, text):
        if should_fail(Path(path)):
            failed.append(Path(path))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    monkeypatch.setattr(outputs, "atomic_write_text", writer)
    return failed


def test_full_disk_mid_batch(tmp_path: Path, stub, monkeypatch: pytest.MonkeyPatch):
    make_bundle(tmp_path / "bundle")
    a = _args(tmp_path)
    make_study(a["input"], "103")
    failed = _enospc_on(monkeypatch, lambda p: p.name == "result.json" and p.parent.name in ("102", "103"))
    res = _invoke_predict(a, "--json")
    _no_traceback(res)
    assert res.exit_code == 1 and len(failed) == 2
    summary = _strict_json(res.stdout)
    assert [o["status"] for o in summary["outcomes"]] == ["done", "failed", "failed"]
    errors = pd.read_csv(a["out"] / "errors.csv", dtype=str)
    assert list(errors.study) == ["102", "103"] and set(errors.stage) == {"write"}
    assert errors.error.str.contains("No space left on device").all()
    assert (errors.submission_rows == "predicted (outputs not written)").all()
    sub = pd.read_csv(a["out"] / "submission.csv", dtype={"row_id": str})
    assert len(sub) == 75
    assert not [p for p in a["out"].rglob(".*")]


def test_full_disk_for_every_study_still_writes_the_csvs(tmp_path: Path, stub, monkeypatch: pytest.MonkeyPatch):
    make_bundle(tmp_path / "bundle")
    a = _args(tmp_path)
    real = outputs.atomic_write

    def writer(path, write):  # errors.csv fails while the batch runs, succeeds at the end (the reserve freed)
        if Path(path).name == "errors.csv" and (a["out"] / ".spineseg-reserve").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)

    monkeypatch.setattr(outputs, "atomic_write", writer)
    _enospc_on(monkeypatch, lambda p: p.name == "result.json")
    res = _invoke_predict(a)
    _no_traceback(res)
    assert res.exit_code == 1
    assert len(pd.read_csv(a["out"] / "errors.csv")) == 2 and len(pd.read_csv(a["out"] / "submission.csv")) == 50


def test_output_folder_that_cannot_be_written_stops_before_the_first_study(
    tmp_path: Path, stub, monkeypatch: pytest.MonkeyPatch
):
    make_bundle(tmp_path / "bundle")
    a = _args(tmp_path)
    _enospc_on(monkeypatch, lambda p: p.name.startswith(".spineseg-probe"))
    res = _invoke_predict(a)
    _no_traceback(res)
    assert res.exit_code == 2 and "cannot write there (No space left on device)" in res.stderr
    assert stub.constructed == 0 and not (a["out"] / "101").exists()


def test_read_only_output_folder(tmp_path: Path, stub, monkeypatch: pytest.MonkeyPatch):
    make_bundle(tmp_path / "bundle")
    a = _args(tmp_path)
    real = os.statvfs
    monkeypatch.setattr(outputs.os, "statvfs", lambda p: SimpleNamespace(f_flag=real(p).f_flag | os.ST_RDONLY))
    res = _invoke_predict(a)
    _no_traceback(res)
    assert res.exit_code == 2 and "is on a read-only file system" in res.stderr and stub.constructed == 0


_KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_faults import StubPredictor
from spine_seg.inference import batch, outputs
real = outputs.atomic_write_text
def dying_writer(path, text):
    if os.path.basename(os.path.dirname(str(path))) == "103" and str(path).endswith("result.json"):
        tmp = outputs.atomic_write.__globals__["temporary_sibling"](outputs.Path(path))
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text[: len(text) // 2])  # half a file on disk, then the kill
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, text)
outputs.atomic_write_text = dying_writer
batch.predict_batch({inp!r}, None, {out!r}, predictor=StubPredictor(), report=False)
"""


def test_killed_batch_keeps_finished_studies_and_resumes(tmp_path: Path):
    """SIGKILL while the third study's result.json is half written: the two finished studies are kept,
    nothing half-written is taken for a result, and a re-run resumes them and finishes the rest."""
    inp = _two(tmp_path / "input")
    make_study(inp, "103")
    make_study(inp, "104")
    out = tmp_path / "out"
    script = _KILL_SCRIPT.format(tests=str(TESTS), inp=str(inp), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "101" / "result.json").is_file() and (out / "102" / "result.json").is_file()
    assert not (out / "103" / "result.json").exists() and not (out / "submission.csv").exists()
    assert [p.name for p in (out / "103").iterdir()][0].startswith(".result.json.")  # the half file, hidden

    res = batch.predict_batch(inp, None, out, predictor=StubPredictor(), report=False)
    assert [o.status for o in res.outcomes] == ["resumed", "resumed", "done", "done"]
    assert len(pd.read_csv(res.submission)) == 100
    assert not [p for p in out.rglob(".*")], "stale temporaries of the killed run left behind"


# ---------------------------------------------------------------------------------------------------------
# 5. resume checks what made a result


def test_resume_checks_bundle_and_options(tmp_path: Path, stub):
    make_bundle(tmp_path / "bundle")
    a = _args(tmp_path)
    assert _invoke_predict(a).exit_code == 0
    res = _invoke_predict(a, "--json")
    assert [o["status"] for o in _strict_json(res.stdout)["outcomes"]] == ["resumed", "resumed"]

    shutil.rmtree(tmp_path / "bundle")
    make_bundle(tmp_path / "bundle", tag="b")  # another bundle, same path
    res = _invoke_predict(a, "--json")
    assert res.exit_code == 0 and [o["status"] for o in _strict_json(res.stdout)["outcomes"]] == ["done", "done"]
    assert "note 101: its result.json was made with another bundle: predicted again" in res.stderr

    a["csv"] = _csv(tmp_path, GOOD_CSV)
    res = _invoke_predict(a, "--json")
    assert [o["status"] for o in _strict_json(res.stdout)["outcomes"]] == ["done", "done"]
    assert "made with other options (--series-csv)" in res.stderr

    (a["out"] / "102" / "result.json").write_text('{"format": "spineseg-result", "rows": [')
    res = _invoke_predict(a, "--json")
    assert [o["status"] for o in _strict_json(res.stdout)["outcomes"]] == ["resumed", "done"]
    assert "note 102: its result.json is damaged: predicted again" in res.stderr


# ---------------------------------------------------------------------------------------------------------
# 6. the small lies: locate, evaluate, bundle info, JSON


@pytest.mark.parametrize(
    "x, y, message",
    [
        ("nan", "10", "--x nan: not a finite pixel coordinate"),
        ("10", "inf", "--y inf: not a finite pixel coordinate"),
        ("-inf", "nan", "--x -inf: not a finite"),
    ],
)
def test_locate_refuses_non_finite(synthetic_study: Path, x: str, y: str, message: str):
    res = runner.invoke(
        app, ["locate", str(synthetic_study), "--series", "12", "--instance", "3", "--x", x, "--y", y, "--json"]
    )
    _no_traceback(res)
    assert res.exit_code == 2 and message in res.stderr and res.stdout == ""


@pytest.mark.parametrize("x, y", [(500.0, 10.0), (-3.0, 10.0), (10.0, 40.0)])
def test_locate_flags_a_pixel_outside_the_image(synthetic_study: Path, x: float, y: float):
    res = runner.invoke(
        app,
        ["locate", str(synthetic_study), "--series", "12", "--instance", "3", "--x", str(x), "--y", str(y), "--json"],
    )
    _no_traceback(res)
    assert res.exit_code == 0
    doc = _strict_json(res.stdout)
    assert doc["source"]["inside_image"] is False and "outside instance 3's 32×40 image" in doc["warnings"][0]
    assert "warning: pixel" in res.stderr


def test_locate_inside_the_image_is_unchanged(synthetic_study: Path):
    res = runner.invoke(
        app, ["locate", str(synthetic_study), "--series", "12", "--instance", "3", "--x", "10", "--y", "20", "--json"]
    )
    doc = _strict_json(res.stdout)
    assert set(doc) == {"study_id", "source", "world_lps_mm", "targets"} and set(doc["source"]) == {
        "series_id",
        "instance_number",
    }


def _labels_and_pred(root: Path, pred_bytes: bytes) -> list[str]:
    labels = root / "train.csv"
    cols = [f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS]
    pd.DataFrame([{"study_id": "101", **{c: "Normal/Mild" for c in cols}}]).to_csv(labels, index=False)
    pred = root / "pred.csv"
    pred.write_bytes(pred_bytes)
    return ["evaluate", "--pred", str(pred), "--labels", str(labels), "--json"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "latin-1"])
def test_evaluate_reads_any_encoding(tmp_path: Path, encoding: str):
    text = uniform_submission(["101"]).to_csv(index=False)
    res = runner.invoke(app, _labels_and_pred(tmp_path, text.encode(encoding)))
    _no_traceback(res)
    assert res.exit_code == 0, res.output
    assert _strict_json(res.stdout)["score"] > 0


@pytest.mark.parametrize(
    "data, message",
    [
        ("row_id,normal_mild\nr\xe9sum\xe9,1\n".encode("latin-1"), "pred.csv: "),
        (b"\x00\x01\x02\x03binary\x00" * 20, "pred.csv: binary content"),
        (b"", "pred.csv: empty file"),
    ],
)
def test_evaluate_errors_name_the_file(tmp_path: Path, data: bytes, message: str):
    res = runner.invoke(app, _labels_and_pred(tmp_path, data))
    _no_traceback(res)
    assert res.exit_code == 2 and message in res.stderr


@pytest.mark.parametrize("manifest", ["[1, 2]", '"a string"', "42", "null"])
def test_bundle_info_on_a_manifest_that_is_not_an_object(tmp_path: Path, manifest: str):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / MANIFEST).write_text(manifest)
    res = runner.invoke(app, ["bundle", "info", str(tmp_path / "b")])
    _no_traceback(res)
    assert res.exit_code == 2 and "manifest.json: a JSON" in res.stderr and "not an object" in res.stderr


def test_json_never_contains_nan(tmp_path: Path):
    from spine_seg.core import textio

    doc = {"a": float("nan"), "b": [float("inf"), np.float64("-inf"), np.float32(1.5)], "c": (1, np.int64(2))}
    assert _strict_json(textio.dumps(doc)) == {"a": None, "b": [None, None, 1.5], "c": [1, 2]}


def test_corpus_size():
    """The corpus must stay at 60 damaged inputs or more (the issue's floor)."""
    n = (
        len(HEADER_CASES)
        + 1
        + len(LAYOUT_CASES)
        + len([c for c in PREDICT_CASES if c.id != "all-good"])
        + 1
        + 4
        + 3
        + 3
        + 3
        + 4
        + 1
    )
    assert n >= 60, n
