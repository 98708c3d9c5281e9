from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from conftest import make_study
from typer.testing import CliRunner

from spine_seg_cli.main import app

runner = CliRunner()


def test_inspect_json_contract(synthetic_study: Path):
    res = runner.invoke(app, ["inspect", str(synthetic_study), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    (study,) = doc["studies"]
    assert study["study_id"] == "777"
    series = {s["series_id"]: s for s in study["series"]}
    assert series["13"]["kind"] == "Axial T2"
    stack = series["13"]["stacks"][0]
    assert {"n_slices", "orientation", "spacing_mm", "pixel_spacing_mm", "slice_thickness_mm"} <= set(stack)
    assert stack["orientation"] == "axial" and stack["n_slices"] == 4
    assert isinstance(series["13"]["warnings"], list)


def test_inspect_table(synthetic_study: Path):
    res = runner.invoke(app, ["inspect", str(synthetic_study)])
    assert res.exit_code == 0
    assert "Sagittal T1" in res.stdout and "stack 1:" in res.stdout


def test_locate_json_contract(synthetic_study: Path):
    res = runner.invoke(
        app, ["locate", str(synthetic_study), "--series", "12", "--instance", "3", "--x", "10", "--y", "20", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["world_lps_mm"]) == 3
    targets = {t["series_id"]: t for t in doc["targets"]}
    assert set(targets) == {"11", "13"}
    for t in targets.values():
        assert {"series_id", "instance_number", "x", "y", "distance_mm"} <= set(t)
    # T1 shares T2's geometry here: same instance, same pixel, on the plane
    assert (targets["11"]["instance_number"], targets["11"]["x"], targets["11"]["y"], targets["11"]["distance_mm"]) == (
        3,
        10,
        20,
        0,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["locate", "{study}", "--series", "99", "--instance", "1", "--x", "0", "--y", "0"], "no series '99'; valid:"),
        (["locate", "{study}", "--series", "12", "--instance", "42", "--x", "0", "--y", "0"], "no instance 42"),
        (["inspect", "{study}/../nowhere"], "no such file or folder"),
    ],
)
def test_user_errors_are_one_line(synthetic_study: Path, args, message):
    res = runner.invoke(app, [a.format(study=synthetic_study) for a in args])
    assert res.exit_code == 2
    assert message in res.stderr and "Traceback" not in res.output


def test_locate_refuses_an_instance_number_two_slices_share(tmp_path: Path):
    """Axial instance 5 (the first slice of the second stack) renumbered 2, as the first stack's second slice
    is: ``locate --instance 2`` cannot know which image is meant, so it says so (exit 2), naming the series,
    the number and both files with their stacks, instead of picking one."""
    study = make_study(tmp_path, shuffle_axial=False)
    first, second = study / "13" / "2.dcm", study / "13" / "5.dcm"
    ds = pydicom.dcmread(second)
    ds.InstanceNumber = 2
    ds.save_as(second)
    res = runner.invoke(app, ["locate", str(study), "--series", "13", "--instance", "2", "--x", "10", "--y", "10"])
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and "Traceback" not in res.output
    (line,) = res.stderr.splitlines()
    assert line == (
        f"error: series 13: instance 2 is shared by 2 slices, {first} (stack 0, slice 2 of 4), {second} "
        "(stack 1, slice 1 of 3); an instance number must name one image"
    )
    # the numbers that name one image still work
    res = runner.invoke(app, ["locate", str(study), "--series", "13", "--instance", "3", "--x", "10", "--y", "10"])
    assert res.exit_code == 0, res.output


def test_real_study_cli(real_study_dir: Path):
    res = runner.invoke(
        app,
        [
            "locate",
            str(real_study_dir),
            "--series",
            "1792451510",
            "--instance",
            "9",
            "--x",
            "231.4451294",
            "--y",
            "316.5182927",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    axial = [t for t in json.loads(res.stdout)["targets"] if t["kind"] == "Axial T2"][0]
    assert abs(axial["instance_number"] - 46) <= 1  # annotated l4_l5 subarticular slice
