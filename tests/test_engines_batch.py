"""The batch around a non-local engine: the driver's discovery, resume with the bundle fingerprint, errors.csv
(OSError rows included) and submission.csv are predict_batch's own, whatever engine runs the studies. A Ray-like
fake engine (its own predictor per run, results out of input order) with :class:`StubPredictor`, so this runs
in seconds and without Ray."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pytest
from fault_kit import _two, make_bundle

from spine_seg.inference import batch, outputs, predictor
from spine_seg.inference.batch import BatchJob, StudyRun, StudyTask, check_submission, predict_batch, run_study
from spine_seg.inference.bundle import load_bundle
from spine_seg.inference.engines import WorkerStartError


class ReversedEngine:
    """A stand-in for the Ray engine: loads its own predictor from ``job.bundle`` (as a worker does), predicts
    with :func:`run_study`, and yields the studies last first; ``fail_after`` raises after that many."""

    def __init__(self, fail_after: int | None = None, error: Exception | None = None) -> None:
        self.load_seconds = 0.0
        self.fail_after = fail_after
        self.error = error or RuntimeError("the cluster went away")

    def run(
        self, tasks: Sequence[StudyTask], job: BatchJob, progress: Callable[[int, str, str], None]
    ) -> Iterator[StudyRun]:
        pred = predictor.Predictor(job.bundle, job.device)
        for k, task in enumerate(reversed(tasks)):
            if self.fail_after is not None and k >= self.fail_after:
                raise self.error
            yield run_study(
                pred,
                task,
                job.series_csv,
                report=job.report,
                run=job.run,
                extra_outputs=job.extra_outputs,
                progress=progress,
            )


def test_engine_batch_order_fingerprint_and_resume(tmp_path: Path, stub):
    inp = _two(tmp_path / "in")
    a, b = make_bundle(tmp_path / "a", "a"), make_bundle(tmp_path / "b", "b")
    out = tmp_path / "out"
    res = predict_batch(inp, a, out, report=False, engine=ReversedEngine())
    assert [o.study for o in res.outcomes] == ["101", "102"] and [o.status for o in res.outcomes] == ["done"] * 2
    assert check_submission(pd.read_csv(res.submission), ["101", "102"]) == []
    run = json.loads((out / "101" / "result.json").read_text())["run"]
    assert run["bundle_fingerprint"] == batch.bundle_fingerprint(load_bundle(a))

    res = predict_batch(inp, a, out, report=False, engine=ReversedEngine())
    assert [o.status for o in res.outcomes] == ["resumed"] * 2
    res = predict_batch(inp, b, out, report=False, engine=ReversedEngine())  # another bundle: predicted again
    assert [o.status for o in res.outcomes] == ["done"] * 2
    assert all("another bundle" in (o.note or "") for o in res.outcomes)
    assert not [p for p in out.rglob(".*")], "temporary or reserve files left behind"


def test_engine_that_cannot_start_stops_the_batch(tmp_path: Path, stub):
    inp = _two(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(WorkerStartError):
        predict_batch(
            inp,
            make_bundle(tmp_path / "a"),
            out,
            report=False,
            engine=ReversedEngine(fail_after=0, error=WorkerStartError("workers could not load the models")),
        )
    assert not (out / "submission.csv").exists() and not [p for p in out.rglob(".*")]


def test_engine_that_fails_mid_batch_costs_only_the_unfinished_studies(tmp_path: Path, stub):
    inp = _two(tmp_path / "in")
    out = tmp_path / "out"
    res = predict_batch(inp, make_bundle(tmp_path / "a"), out, report=False, engine=ReversedEngine(fail_after=1))
    assert [(o.study, o.status) for o in res.outcomes] == [("101", "failed"), ("102", "done")]
    errors = pd.read_csv(out / "errors.csv", dtype=str)
    assert list(errors.study) == ["101"] and errors.stage[0] == batch.ENGINE_STAGE
    assert "the cluster went away" in errors.error[0] and errors.submission_rows[0] == "uniform"
    assert check_submission(pd.read_csv(res.submission), ["101", "102"]) == []


def test_engine_study_with_a_full_disk_is_its_errors_row(tmp_path: Path, stub, monkeypatch: pytest.MonkeyPatch):
    inp = _two(tmp_path / "in")
    out = tmp_path / "out"
    real = outputs.atomic_write_text

    def writer(path, text):
        if Path(path).name == "result.json" and Path(path).parent.name == "102":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    monkeypatch.setattr(outputs, "atomic_write_text", writer)
    res = predict_batch(inp, make_bundle(tmp_path / "a"), out, report=False, engine=ReversedEngine())
    assert [o.status for o in res.outcomes] == ["done", "failed"]
    errors = pd.read_csv(out / "errors.csv", dtype=str)
    assert list(errors.study) == ["102"] and errors.stage[0] == "write"
    assert "No space left on device" in errors.error[0]
    assert errors.submission_rows[0] == "predicted (outputs not written)"
    assert check_submission(pd.read_csv(res.submission), ["101", "102"]) == []
