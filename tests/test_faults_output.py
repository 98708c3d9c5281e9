"""The fault corpus, output side: a full disk, a read-only folder, a killed batch, resume checks, and the
small lies of locate, evaluate, bundle info and JSON.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import make_study
from fault_kit import (
    GOOD_CSV,
    TESTS,
    StubPredictor,
    _args,
    _csv,
    _invoke_predict,
    _no_traceback,
    _strict_json,
    _two,
    make_bundle,
    runner,
)
from test_faults_input import HEADER_CASES, LAYOUT_CASES
from test_faults_predict import PREDICT_CASES

from spine_seg.core.constants import CONDITIONS, LEVELS
from spine_seg.grading.metric import uniform_submission
from spine_seg.inference import batch, outputs
from spine_seg.inference.bundle import MANIFEST
from spine_seg_cli.main import app

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
from fault_kit import StubPredictor
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
