"""spine_seg.core.atomic: a failed write leaves the earlier file and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine_seg.core.atomic import atomic_write, atomic_write_text, temporary_sibling


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "segmentation.nii.gz"
    target.write_text("old")

    def boom(p: Path) -> None:
        p.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["segmentation.nii.gz"]


def test_temporary_name_keeps_suffixes_and_is_hidden(tmp_path: Path):
    tmp = temporary_sibling(tmp_path / "segmentation.nii.gz")
    assert tmp.parent == tmp_path and tmp.name.startswith(".segmentation.nii.gz.") and tmp.name.endswith(".nii.gz")
    assert temporary_sibling(tmp_path / "a.png") != temporary_sibling(tmp_path / "a.png")


def test_text_write_replaces(tmp_path: Path):
    target = tmp_path / "result.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
