"""Choosing an engine: names, options that need Ray, and Ray missing (runs without Ray installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spine_seg.inference.engines import make_engine
from spine_seg.inference.engines.ray_engine import RAY_INSTALL_COMMAND
from spine_seg_cli.main import app

runner = CliRunner()


@pytest.fixture()
def batch(tmp_path) -> Path:
    from conftest import make_study

    return make_study(tmp_path / "in").parent


def test_ray_missing_exits_2_with_the_install_command(batch, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError, as where it is not installed
    src = batch
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    res = runner.invoke(
        app, ["predict", str(src), "--model", "no-such-bundle", "--out", str(tmp_path), "--engine", "ray"]
    )
    assert res.exit_code == 2
    assert RAY_INSTALL_COMMAND in res.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--address", "auto"], ["--gpus-per-worker", "1"]])
def test_ray_options_need_the_ray_engine(batch, tmp_path, extra):
    src = batch
    res = runner.invoke(app, ["predict", str(src), "--model", "no-such-bundle", "--out", str(tmp_path), *extra])
    assert res.exit_code == 2 and "only with --engine ray" in res.output


def test_make_engine():
    assert make_engine("local") is None
    with pytest.raises(ValueError, match="unknown value"):
        make_engine("spark")
    with pytest.raises(ValueError, match="--workers: only with --engine ray"):
        make_engine("local", workers=2)


def test_unknown_cross_check_exits_2_before_any_model_loads(batch, tmp_path):
    res = runner.invoke(
        app,
        ["predict", str(batch), "--model", "no-such-bundle", "--out", str(tmp_path / "o"), "--cross-check", "often"],
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--cross-check: unknown value 'often'; valid: ['auto', 'always', 'unsure', 'never']" in res.output
    assert not (tmp_path / "o").exists()


def test_a_bad_mirroring_is_refused_before_anything_loads(tmp_path):
    batch = tmp_path / "batch"
    batch.mkdir()
    res = CliRunner().invoke(
        app,
        ["predict", str(batch), "--model", "no-such-bundle", "--out", str(tmp_path / "o"), "--mirroring", "twice"],
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--mirroring: unknown value 'twice'; valid: ['superior_inferior', 'all', 'none']" in res.output
    assert not (tmp_path / "o").exists()


def test_mirroring_is_part_of_the_resume_key_only_when_chosen():
    from spine_seg.inference.batch import run_key

    assert "mirroring" not in run_key("some-bundle", None)["options"]
    assert run_key("some-bundle", None, mirroring="none")["options"]["mirroring"] == "none"


def test_cross_check_is_part_of_the_resume_key_only_when_chosen(tmp_path):
    from spine_seg.inference.batch import run_key

    bundle = "some-bundle"
    assert "cross_check" not in run_key(bundle, None)["options"]
    assert run_key(bundle, None, "always")["options"]["cross_check"] == "always"
