"""Shared by the fault corpus (test_faults_*.py) and the engine tests: :class:`StubPredictor` (the real
batch, discovery, ingestion, pixel decoding, budget and writers; no nnU-Net or timm), bundles made on the
fly, the ``stub`` fixture, and the ways a DICOM file is damaged."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from conftest import make_study
from PIL import Image
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit
from typer.testing import CliRunner

from spine_seg.core.checksums import sha256_file
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
from spine_seg.core.labels import SEG_LABELS
from spine_seg.dicom import load_study
from spine_seg.grading.metric import uniform_submission
from spine_seg.inference import predictor
from spine_seg.inference.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST
from spine_seg.report.result import StudyResult
from spine_seg_cli.main import app

runner = CliRunner()
TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------------
# the stand-in predictor and bundle


class StubPredictor:
    """The real stages up to pixels (ingest, the resampling budget, decoding the Sagittal T2 stack), then the
    prior's rows: what the batch, its writers and its error handling need, without nnU-Net or timm."""

    constructed = 0

    def __init__(
        self,
        bundle: Any = None,
        device: str = "cpu",
        *,
        target_spacing: tuple[float, ...] = (0.5, 0.5),
        cross_check: str = "auto",
        mirroring: str = "superior_inferior",
    ):
        StubPredictor.constructed += 1
        self.cross_check = cross_check
        self.mirroring = mirroring
        self.bundle = (
            bundle
            if bundle is not None and not isinstance(bundle, (str, Path))
            else SimpleNamespace(name="stub", manifest={"files": {"x": {"size": 1, "sha256": "0"}}})
        )
        self.device = device
        self.load_seconds = 0.0
        manager = SimpleNamespace(spacing=target_spacing)
        self.seg_model = SimpleNamespace(predictor=SimpleNamespace(configuration_manager=manager))

    def prior_rows(self, study_id: str) -> pd.DataFrame:
        return uniform_submission([study_id])

    def predict_with_study(self, path, series_csv=None, progress=None, study=None):
        timings: dict[str, float] = {}
        folder = Path(path)
        with predictor._stage("ingest", timings, progress, folder.name):
            if study is None:
                study = load_study(folder, series_csv)
        _, stack = predictor._segmentation_stack(study)
        if stack is not None:
            with predictor._stage("segment", timings, progress, folder.name):
                predictor.check_segmentation_budget(self.seg_model, stack)
                stack.load()
        sub = uniform_submission([study.study_id])
        result = StudyResult(
            study_id=study.study_id,
            folder=folder,
            submission=sub,
            sources={},
            landmarks=None,
            projection=None,
            segmentation=None,
            segmentation_stack=None,
            crops={},
            series={},
            fallbacks=(),
            warnings=tuple(f"skipped file {s.path.name}: {s.reason}" for s in study.skipped),
            timings_s=timings,
            versions={"spineseg": "test"},
            bundle={"name": self.bundle.name},
        )
        return result, study


def make_bundle(root: Path, tag: str = "a", manifest_override: Any = None) -> Path:
    """A bundle folder that passes every check of ``load_bundle`` (its models are never loaded here)."""
    seg = root / "segmentation" / "nnUNetTrainer__nnUNetPlans__2d"
    seg.mkdir(parents=True)
    (seg / "dataset.json").write_text(json.dumps({"labels": SEG_LABELS}))
    (root / "grading").mkdir()
    (root / "grading" / "ensemble.json").write_text(json.dumps({"tag": tag}))
    files = {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "name": f"fake-{tag}",
        "labels": {"conditions": list(CONDITIONS), "levels": list(LEVELS), "severities": list(SEVERITIES)},
        "segmentation": {"folder": seg.relative_to(root).as_posix(), "folds": [0], "labels": SEG_LABELS},
        "grading": {"ensemble": "grading/ensemble.json"},
        "files": files,
    }
    doc = manifest_override(manifest) if manifest_override is not None else manifest
    (root / MANIFEST).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return root


# ---------------------------------------------------------------------------------------------------------
# damaging DICOM


def set_raw(path: Path, **tags: str | None) -> Path:
    """Rewrite tags of a file with exactly these value strings (None deletes the tag), bypassing pydicom's
    validation: how a damaged archive's bytes look."""
    ds = pydicom.dcmread(path)
    for keyword, text in tags.items():
        tag = Tag(tag_for_keyword(keyword))
        if text is None:
            if tag in ds:
                del ds[tag]
            continue
        raw = text.encode("latin-1")
        raw += b" " * (len(raw) % 2)
        ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    ds.save_as(path)
    return path


def t2_file(study: Path, k: int = 2) -> Path:
    return sorted((study / "12").glob("*.dcm"), key=lambda p: int(p.stem))[k]


def deflate(path: Path) -> Path:
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def undecodable(path: Path) -> Path:
    """Well-formed encapsulated JPEG 2000 fragments holding garbage: passes the scan, fails decoding."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.90")
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"garbage!" * 8])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def truncated_jpeg(path: Path) -> Path:
    """The slice as a real JPEG Baseline image cut off half-way, as a transfer that broke off leaves it: the
    encapsulation is well formed, so it passes the scan; Pillow, the decoder installed for the syntax, refuses
    it, and pydicom logs that refusal with its traceback before spineseg reports the file."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    image = Image.fromarray((arr / max(float(arr.max()), 1.0) * 255).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()[: len(buf.getvalue()) // 2]])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def multiframe(path: Path) -> Path:
    return set_raw(path, NumberOfFrames="3")


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:-700])
    return path


def dicomdir_like(path: Path) -> Path:
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    ds.save_as(path, enforce_file_format=True)
    return path


def _no_traceback(res) -> None:
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _two(root: Path) -> Path:
    make_study(root, "101")
    make_study(root, "102")
    return root


def _args(root: Path, **over: Any) -> dict[str, Any]:
    inp = root / "input"
    if not inp.exists():
        _two(inp)
    return {"input": inp, "model": root / "bundle", "out": root / "out", "csv": None, "extra": [], **over}


def _csv(root: Path, data: bytes | str, name: str = "series.csv", encoding: str = "utf-8") -> Path:
    path = root / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


GOOD_CSV = (
    "study_id,series_id,series_description\n101,11,Sagittal T1\n101,12,Sagittal T2/STIR\n101,13,Axial T2\n"
    "102,11,Sagittal T1\n102,12,Sagittal T2/STIR\n102,13,Axial T2\n"
)


def _invoke_predict(a: dict[str, Any], *more: str):
    args = [
        "predict",
        str(a["input"]),
        "--model",
        str(a["model"]),
        "--out",
        str(a["out"]),
        "--no-progress",
        "--no-report",
        *a["extra"],
        *more,
    ]
    if a["csv"] is not None:
        args += ["--series-csv", str(a["csv"])]
    return runner.invoke(app, args)
