"""spine_seg.inference.bundle and ``spineseg bundle``: export, import, and refusal of bundles predict would misread."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spine_seg.core.constants import LEVELS
from spine_seg.inference.bundle import (
    MANIFEST,
    BundleError,
    export_bundle,
    import_bundle,
    installed_bundles,
    load_bundle,
)
from spine_seg_cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle.bundle, tmp_path / "copy"))


def _edit_manifest(root: Path, edit) -> None:
    doc = json.loads((root / MANIFEST).read_text())
    edit(doc)
    (root / MANIFEST).write_text(json.dumps(doc))


def test_exported_bundle_is_complete(tiny_bundle):
    b = load_bundle(tiny_bundle.bundle)
    m = b.manifest
    assert m["format"] == "spineseg-bundle" and m["format_version"] == 1 and b.name == "tiny"
    assert {"spineseg", "torch", "timm", "nnunetv2"} <= set(m["versions"])
    assert m["labels"]["levels"] == list(LEVELS)
    assert m["segmentation"]["labels"]["disc_l4_l5"] == 10 and m["segmentation"]["folds"] == ["all"]
    assert set(m["grading"]["crop_specs"]) == {"spinal", "foraminal", "subarticular"}
    assert m["grading"]["crop_specs"]["spinal"]["size_px"] == 48
    assert m["fallback"]["path"] == "fallback/axial_fallback.pt"
    assert m["training_data"]["source"].startswith("tests/")
    assert (b.segmentation_folder / "fold_all" / "checkpoint_final.pth").is_file()
    assert all((b.root / rel).is_file() for rel in m["files"])
    ens = b.ensemble("cpu")
    assert len(ens.members) == 2 and all(str(mem.path).startswith(str(b.root)) for mem in ens.members)


def test_zip_round_trip_and_import_by_name(tiny_bundle, tmp_path: Path):
    home = tmp_path / "home"
    z = export_bundle(
        tmp_path / "tiny.zip",
        load_bundle(tiny_bundle.bundle).segmentation_folder,
        tiny_bundle.bundle / "grading" / "ensemble.json",
        fallback=tiny_bundle.bundle / "fallback" / "axial_fallback.pt",
    )
    assert zipfile.is_zipfile(z) and MANIFEST in zipfile.ZipFile(z).namelist()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_bundle(
            z, load_bundle(tiny_bundle.bundle).segmentation_folder, tiny_bundle.bundle / "grading" / "ensemble.json"
        )
    from_zip = load_bundle(z, home=home)
    assert from_zip.manifest["files"] == load_bundle(tiny_bundle.bundle).manifest["files"]
    installed = import_bundle(z, "demo-v1", home=home)
    assert installed.root == (home / "demo-v1").resolve() and installed.name == "demo-v1"
    assert installed_bundles(home) == ["demo-v1"]
    assert load_bundle("demo-v1", home=home).root == installed.root
    with pytest.raises(FileExistsError, match="demo-v1"):
        import_bundle(z, "demo-v1", home=home)
    with pytest.raises(BundleError, match=r"installed in .*: \['demo-v1'\]"):
        load_bundle("nope", home=home)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["segmentation"]["labels"].update({"L1": 9}), "renumbered"),
        (lambda d: d["segmentation"]["labels"].update({"T12": 13}), "unknown names"),
        (lambda d: d["segmentation"]["labels"].pop("disc_l5_s1"), "lacks labels"),
        (lambda d: d["labels"].update({"levels": list(reversed(LEVELS))}), "levels"),
        (lambda d: d.update({"format_version": 99}), "upgrade spineseg"),
        (lambda d: d.update({"format": "something-else"}), "not a spineseg bundle"),
    ],
)
def test_manifest_mismatch_is_refused(bundle_copy: Path, edit, message: str):
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_damaged_files_are_named(bundle_copy: Path):
    ckpt = next(bundle_copy.rglob("checkpoint_final.pth"))
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:-10])
    with pytest.raises(BundleError, match="checkpoint_final.pth: .* bytes, manifest says"):
        load_bundle(bundle_copy)
    ckpt.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BundleError, match="sha256 differs"):
        load_bundle(bundle_copy)
    load_bundle(bundle_copy, checksums=False)  # size-only check passes: same size
    ckpt.unlink()
    with pytest.raises(BundleError, match="checkpoint_final.pth: missing"):
        load_bundle(bundle_copy)
    (bundle_copy / MANIFEST).unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(bundle_copy)


def test_dataset_json_must_agree(bundle_copy: Path):
    ds = next(bundle_copy.rglob("dataset.json"))
    doc = json.loads(ds.read_text())
    doc["labels"]["spinal_canal"] = 11
    ds.write_text(json.dumps(doc))
    _edit_manifest(bundle_copy, lambda d: d["files"].pop(ds.relative_to(bundle_copy).as_posix()))
    with pytest.raises(BundleError, match="dataset.json: labels .* differ from the manifest"):
        load_bundle(bundle_copy)


def test_zip_slip_is_refused(tmp_path: Path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(MANIFEST, "{}")
        zf.writestr("../outside.txt", "x")
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load_bundle(z, home=tmp_path / "home")
    assert not (tmp_path / "home" / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_cli_bundle_commands(tiny_bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPINESEG_HOME", str(tmp_path / "home"))
    res = runner.invoke(app, ["bundle", "list"])
    assert res.exit_code == 0 and "no bundle installed" in res.stdout
    res = runner.invoke(app, ["bundle", "import", str(tiny_bundle.bundle), "--name", "t1"])
    assert res.exit_code == 0, res.output
    assert "spineseg predict INPUT --model t1" in res.stdout
    res = runner.invoke(app, ["bundle", "list"])
    assert "t1" in res.stdout
    res = runner.invoke(app, ["bundle", "info", "t1"])
    assert res.exit_code == 0 and json.loads(res.stdout)["name"] == "t1"
    res = runner.invoke(
        app,
        [
            "bundle",
            "export",
            "--seg-model",
            str(tmp_path / "nowhere"),
            "--grading",
            str(tiny_bundle.bundle / "grading" / "ensemble.json"),
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 2 and "not an nnU-Net result folder" in res.stderr
    res = runner.invoke(
        app,
        [
            "predict",
            str(tiny_bundle.cohort / "test_images"),
            "--model",
            "missing-bundle",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 2 and "no bundle 'missing-bundle'" in res.stderr and not (tmp_path / "o").exists()
