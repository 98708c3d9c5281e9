"""The fault corpus, input side: one damaged file in a study, and study discovery over folders as
archives hold them. Each case asserts the exit code (README: 0 all done, 1 some studies failed and the rest
written, 2 nothing could start), a message naming the file or the problem, and that no traceback escaped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import make_study
from fault_kit import (
    TESTS,
    _no_traceback,
    _strict_json,
    _two,
    deflate,
    dicomdir_like,
    make_bundle,
    multiframe,
    runner,
    set_raw,
    t2_file,
    truncate,
    truncated_jpeg,
)

from spine_seg.dicom import load_study
from spine_seg_cli.main import app

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
# 3. a slice no decoder reads: the batch goes on, stderr names the file in one line, tracebacks only with -v

#: The real ``spineseg`` entry point in a process of its own (its logging set up as a user's run has it, which
#: pytest's own log handlers would hide in-process), with the stub predictor in place of the models.
_CLI_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fault_kit import StubPredictor
from spine_seg.inference import predictor
predictor.Predictor = StubPredictor
from spine_seg_cli.main import app
app(sys.argv[1:], prog_name="spineseg")
"""


@pytest.mark.parametrize("verbose", [False, True], ids=["plain", "verbose"])
def test_undecodable_jpeg_slice_is_one_line_on_stderr(tmp_path: Path, verbose: bool):
    """pydicom logs the decoder's refusal with a traceback, which a user reads as a crash: without -v stderr
    holds spineseg's line naming the file and no traceback; with -v pydicom's record and traceback are there."""
    inp = _two(tmp_path / "input")
    bad = truncated_jpeg(t2_file(inp / "102"))
    bundle = make_bundle(tmp_path / "bundle")
    args = ["predict", str(inp), "--model", str(bundle), "--out", str(tmp_path / "out"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CLI_SCRIPT.format(tests=str(TESTS)),
            *(["-v"] if verbose else []),
            *args,
            "--no-report",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr  # one study failed, the other was written
    assert (tmp_path / "out" / "101" / "result.json").is_file()
    lines = proc.stderr.splitlines()
    naming = [line for line in lines if str(bad) in line]
    summary = [line for line in naming if line.startswith("  failed 102 (segment): PixelDataError: ")]
    assert len(summary) == 1, proc.stderr
    assert f"{bad}: cannot decode pixel data (JPEG Baseline (Process 1)): pillow: Truncated File Read;" in summary[0]
    # no other line names it without -v (the batch logs the failure as it happens at INFO, shown with -v)
    others = [line for line in naming if line not in summary]
    if verbose:
        assert all(line.startswith("INFO spine_seg.inference.batch: 102 failed in segment:") for line in others)
    else:
        assert others == [], proc.stderr
    if verbose:
        assert "Traceback (most recent call last)" in proc.stderr, proc.stderr
        assert any(line.startswith("ERROR pydicom.") for line in lines), proc.stderr
        assert "OSError: Truncated File Read" in proc.stderr
    else:
        assert "Traceback" not in proc.stderr, proc.stderr
        assert not [line for line in lines if "pydicom" in line and "pydicom[pixeldata]" not in line], proc.stderr
        assert not [line for line in lines if line.startswith(" ") and not line.startswith("  failed ")], proc.stderr
