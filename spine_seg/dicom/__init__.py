"""DICOM ingestion: headers-only folder scan, series kinds, stacks with patient-space geometry, lazy pixels."""

from __future__ import annotations

from spine_seg.dicom.kinds import infer_kind, read_series_csv
from spine_seg.dicom.model import (
    AmbiguousInstanceError,
    DicomError,
    NoImageSeriesError,
    PixelDataError,
    Series,
    SkippedFile,
    SliceHit,
    SliceInfo,
    Stack,
    Study,
)
from spine_seg.dicom.scan import load_study, scan_folder, split_into_stacks

__all__ = [
    "AmbiguousInstanceError",
    "DicomError",
    "NoImageSeriesError",
    "PixelDataError",
    "Series",
    "SkippedFile",
    "SliceHit",
    "SliceInfo",
    "Stack",
    "Study",
    "infer_kind",
    "load_study",
    "read_series_csv",
    "scan_folder",
    "split_into_stacks",
]
