"""The fault corpus, ``predict``'s inputs, options, bundles and output folders: each with its exit code and
message, through the CLI with :class:`fault_kit.StubPredictor` (the real models run in test_pipeline.py).
"""

from __future__ import annotations

import codecs
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fault_kit import (
    GOOD_CSV,
    _args,
    _csv,
    _invoke_predict,
    _no_traceback,
    make_bundle,
    set_raw,
    t2_file,
    undecodable,
)

from spine_seg.core.constants import SEVERITIES
from spine_seg.inference import predictor

# ---------------------------------------------------------------------------------------------------------
# 3. predict: inputs, options, bundles and output folders; each with its exit code and message


@dataclass(frozen=True)
class PredictCase:
    id: str
    code: int
    message: str  # in stderr ("" = none required)
    build: Callable[[Path], dict[str, Any]] = field(default=lambda root: {})
    models_load: bool = True  # False: refused before any model would load


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
