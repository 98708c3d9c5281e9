"""The Ray engine on a local 2-CPU Ray cluster with the tiny bundle: the same submission and probabilities as
the local engine, a killed worker (retried once, then reported), resume, and Ray missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spine_seg.inference.batch import check_submission, predict_batch
from spine_seg.inference.engines.ray_engine import KILL_ENV, WORKER_STAGE, RayEngine
from spine_seg.inference.outputs import ERRORS_CSV, RESULT_JSON, SUBMISSION_CSV
from spine_seg.inference.predictor import Predictor
from spine_seg_cli.main import app

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'spineseg[distributed]'")
pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs, no dashboard) for the whole module; the engine uses it as it is."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def batch(tiny_bundle, tmp_path_factory) -> tuple[Path, Path]:
    """Two synthetic studies in one folder (the tiny bundle's test studies) and their series CSV."""
    root = tmp_path_factory.mktemp("ray_batch")
    shutil.copytree(tiny_bundle.cohort / "test_images", root / "in")
    return root / "in", tiny_bundle.cohort / "test_series_descriptions.csv"


@pytest.fixture(scope="module")
def local_out(tiny_bundle, batch, tmp_path_factory) -> Path:
    src, csv = batch
    out = tmp_path_factory.mktemp("local") / "out"
    res = predict_batch(
        src, None, out, series_csv=csv, predictor=Predictor(tiny_bundle.bundle, device="cpu"), report=False
    )
    assert not res.failed
    return out


def _probabilities(out: Path, study: str) -> np.ndarray:
    doc = json.loads((out / study / RESULT_JSON).read_text())
    return np.array([[r[s] for s in ("normal_mild", "moderate", "severe")] for r in doc["rows"]])


def _assert_same_submission(a: Path, b: Path) -> None:
    sa, sb = pd.read_csv(a / SUBMISSION_CSV), pd.read_csv(b / SUBMISSION_CSV)
    assert list(sa.row_id) == list(sb.row_id)
    assert np.allclose(sa.iloc[:, 1:].to_numpy(), sb.iloc[:, 1:].to_numpy(), atol=2e-6)


def test_ray_matches_local_and_survives_a_killed_worker(
    ray_cluster, tiny_bundle, batch, local_out, tmp_path, monkeypatch
):
    src, csv = batch
    studies = sorted(p.name for p in src.iterdir())
    # the first worker to get this study dies in it (os._exit, as a killed process): retried once, then done
    monkeypatch.setenv(KILL_ENV, f"{studies[1]}:once")
    engine = RayEngine(workers=2)
    seen: list[tuple[str, str]] = []
    res = predict_batch(
        src,
        tiny_bundle.bundle,
        tmp_path,
        series_csv=csv,
        device="cpu",
        report=False,
        engine=engine,
        progress=lambda i, n, s, stage: seen.append((s, stage)),
    )
    assert [o.status for o in res.outcomes] == ["done"] * 2 and [o.study for o in res.outcomes] == studies
    assert engine.restarts == 1 and len(engine.worker_info) == 2 and res.load_seconds > 0
    assert (studies[1], "retry") in seen and all((s, "done") in seen for s in studies)
    _assert_same_submission(tmp_path, local_out)
    for s in studies:
        assert np.allclose(_probabilities(tmp_path, s), _probabilities(local_out, s), atol=1e-6)
    assert not (tmp_path / ERRORS_CSV).exists()
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left behind"


def test_worker_that_dies_twice_costs_only_its_study_then_resume(
    ray_cluster, tiny_bundle, batch, local_out, tmp_path, monkeypatch
):
    src, csv = batch
    studies = sorted(p.name for p in src.iterdir())
    victim = studies[0]
    monkeypatch.setenv(KILL_ENV, victim)
    args = [
        "predict",
        str(src),
        "--model",
        str(tiny_bundle.bundle),
        "--out",
        str(tmp_path),
        "--series-csv",
        str(csv),
        "--device",
        "cpu",
        "--engine",
        "ray",
        "--workers",
        "2",
        "--no-report",
        "--no-dicom-out",
        "--json",
        "--no-progress",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout)
    assert summary["done"] == 1 and summary["failed"] == 1
    errors = pd.read_csv(tmp_path / ERRORS_CSV, dtype=str)
    assert list(errors.study) == [victim] and errors.stage[0] == WORKER_STAGE and "died 2 times" in errors.error[0]
    sub = pd.read_csv(tmp_path / SUBMISSION_CSV)
    assert check_submission(sub, studies) == []
    prior = Predictor(tiny_bundle.bundle, device="cpu").prior_rows(victim)
    mine = sub[sub.row_id.str.startswith(f"{victim}_")]
    assert np.allclose(mine.iloc[:, 1:].to_numpy(), prior.iloc[:, 1:].to_numpy(), atol=1e-6)
    assert not (tmp_path / victim / RESULT_JSON).exists()

    # resume: the healthy workers now predict only the failed study; the others are read back
    monkeypatch.delenv(KILL_ENV)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["resumed"] == 1 and summary["done"] == 1 and summary["errors"] is None
    assert not (tmp_path / ERRORS_CSV).exists()
    _assert_same_submission(tmp_path, local_out)


def test_bad_engine_options():
    with pytest.raises(ValueError, match="--workers"):
        RayEngine(workers=0)
    with pytest.raises(ValueError, match="--address"):
        RayEngine(address="localhost:6379")
    with pytest.raises(ValueError, match="--gpus-per-worker"):
        RayEngine(gpus_per_worker=-1)


class _FakeCluster:
    def __init__(self, cpus: float, gpus: float = 0.0):
        self.resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}

    def cluster_resources(self) -> dict:
        return self.resources


def test_worker_plan():
    from spine_seg.inference.batch import BatchJob

    cpu, auto = BatchJob("b", device="cpu"), BatchJob("b", device="auto")
    assert RayEngine()._plan(_FakeCluster(8), 100, cpu) == (8, 0.0, 1.0)
    assert RayEngine()._plan(_FakeCluster(8), 3, cpu) == (3, 0.0, 1.0)  # never more workers than studies
    assert RayEngine()._plan(_FakeCluster(16, gpus=2), 100, auto) == (2, 1.0, 1.0)  # one per GPU by default
    assert RayEngine(gpus_per_worker=0.5)._plan(_FakeCluster(16, gpus=2), 100, auto) == (4, 0.5, 1.0)
    assert RayEngine(workers=4)._plan(_FakeCluster(2), 100, cpu) == (4, 0.0, 0.5)  # embedded: share the CPUs
    assert RayEngine(workers=4, address="auto")._plan(_FakeCluster(2), 100, cpu) == (4, 0.0, 1.0)  # autoscaler's call
    with pytest.raises(ValueError, match="--gpus-per-worker"):
        RayEngine()._plan(_FakeCluster(8), 10, BatchJob("b", device="cuda"))
    with pytest.raises(ValueError, match="has 0 GPUs"):
        RayEngine(gpus_per_worker=1)._plan(_FakeCluster(8), 10, auto)
