"""spine_seg.core: the one home resolver, the one archive extractor, the choice enums, sitk ↔ affine."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spine_seg.core import archives, choices, geometry, home


def test_one_home_for_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(home.HOME_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home.spineseg_home() == tmp_path / ".spineseg"
    monkeypatch.setenv(home.HOME_VAR, str(tmp_path / "h"))
    from spine_seg.inference.bundle import bundles_home
    from spine_seg.segmentation import nnunet_env
    from spine_seg_external_data.download import default_dest

    assert bundles_home() == tmp_path / "h" / "bundles"
    assert default_dest("spider") == tmp_path / "h" / "data" / "spider"
    for var in nnunet_env.PATH_VARS:  # an earlier test may have applied nnU-Net's variables
        monkeypatch.delenv(var, raising=False)
    assert nnunet_env.resolve(cpus=2).raw == tmp_path / "h" / "nnUNet_raw"


def test_archive_refuses_escaping_members_before_writing(tmp_path: Path):
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ok.txt", "x")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(archives.UnsafeArchiveError, match="evil"):
        archives.extract_archive(zpath, tmp_path / "d")
    assert not (tmp_path / "d" / "ok.txt").exists() and not (tmp_path / "evil.txt").exists()
    with pytest.raises(archives.ArchiveError, match="unknown archive type"):
        archives.extract_archive(tmp_path / "x.rar", tmp_path / "e")


def test_choices_are_their_strings():
    assert choices.Device.CPU == "cpu" and json.dumps({"d": choices.Device.CUDA}) == '{"d": "cuda"}'
    assert choices.values(choices.Device) == ("auto", "cpu", "cuda")
    assert choices.check_choice("device", "cpu", choices.Device) == "cpu"
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; valid: auto, cpu, cuda"):
        choices.check_choice("device", "tpu", choices.Device)
    with pytest.raises(ValueError, match=r"--engine: unknown value 'x'; valid: \['local', 'ray'\]"):
        choices.check_option("--engine", "x", choices.Engine)


def test_sitk_affine_round_trip():
    sitk = pytest.importorskip("SimpleITK")
    affine = np.array([[0, 0, -3.0, 10], [0.5, 0, 0, -4], [0, -0.6, 0, 7], [0, 0, 0, 1]])
    img = geometry.set_sitk_geometry(sitk.Image(4, 5, 6, sitk.sitkUInt8), affine)
    assert np.allclose(geometry.affine_from_sitk(img), affine)


def test_choice_help_reads_the_enum():
    from spine_seg.core.choices import CrossCheck, Device, choice_help

    assert choice_help(Device).startswith("auto | cpu | cuda: Where torch")
    assert "unsure" in choice_help(CrossCheck) and "\n" not in choice_help(CrossCheck)
