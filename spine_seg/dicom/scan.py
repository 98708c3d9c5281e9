"""Scan a folder tree of DICOM files (headers only) into Studies, Series and Stacks.

Ids: a study is keyed by StudyInstanceUID (the competition sets it to the study id). A series is named
after the folder that holds it when that folder holds exactly that one series, as in the competition's
``train_images/<study>/<series>/<instance>.dcm`` layout; otherwise by its SeriesInstanceUID.
SOPInstanceUIDs and FrameOfReferenceUIDs are never used as keys: the competition repeats the former across
series and gives every series its own frame of reference although their patient coordinates agree.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from spine_seg.core.constants import SeriesKind
from spine_seg.dicom import tags
from spine_seg.dicom.discover import walk_files
from spine_seg.dicom.kinds import AcquisitionTags, infer_kind, listed_kind, read_series_csv
from spine_seg.dicom.model import NoImageSeriesError, Series, SkippedFile, SliceInfo, Stack, Study

log = logging.getLogger(__name__)

_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_PIXEL_TAG_BE = b"\x7f\xe0\x00\x10"
_ITEM = 0xE000FFFE
_SEQ_DELIM = 0xE0DDFFFE
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


class _Skip(Exception):
    """A file that is not an image slice spineseg can use; the message is the reason."""


@dataclass(frozen=True)
class _Header:
    info: SliceInfo
    study_uid: str
    series_uid: str
    tags: AcquisitionTags
    notes: tuple[str, ...] = ()  # header oddities that did not cost the slice (an InstanceNumber 'A1')


def _float(ds: pydicom.Dataset, name: str) -> float | None:
    """An optional acquisition tag (EchoTime …) as a finite float; None when absent or unusable, since these
    tags only add evidence for the series kind and a damaged one must not cost the slice."""
    try:
        return tags.parse_optional_number(ds.get(name), name)
    except tags.TagError:
        return None


def _check_pixel_data(fp, ds: pydicom.Dataset, size: int) -> None:
    """Catch a truncated file at scan time, cheaply: the header alone would read fine."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    little = syntax is None or syntax.is_little_endian
    tag = fp.read(4)  # dcmread(stop_before_pixels=True) leaves the file at the pixel data element
    if tag != (_PIXEL_TAG if little else _PIXEL_TAG_BE):
        raise _Skip("no pixel data (not an image)")
    if syntax is None or not syntax.is_implicit_VR:
        fp.read(4)  # VR + reserved
    (length,) = struct.unpack("<I" if little else ">I", fp.read(4))
    data_start = fp.tell()
    if length != 0xFFFFFFFF:
        frames = tags.parse_int(ds.get("NumberOfFrames", 1) or 1, "NumberOfFrames", 1)
        expected = (
            tags.parse_int(ds.Rows, "Rows", 1)
            * tags.parse_int(ds.Columns, "Columns", 1)
            * tags.parse_int(ds.get("SamplesPerPixel", 1), "SamplesPerPixel", 1, 4)
            * tags.parse_int(ds.BitsAllocated, "BitsAllocated", 1, 64)
            // 8
            * frames
        )
        have = size - data_start
        if have < min(length, expected):
            raise _Skip(f"truncated pixel data: {have} of {min(length, expected)} bytes present")
        return
    # Encapsulated: walk the fragment items to the sequence delimiter.
    pos = data_start
    while True:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            raise _Skip("truncated encapsulated pixel data: no sequence delimiter before end of file")
        item, item_len = struct.unpack("<II", head)
        if item == _SEQ_DELIM:
            return
        if item != _ITEM:
            raise _Skip(f"corrupt encapsulated pixel data at byte {pos}")
        pos += 8 + item_len
        if pos > size:
            raise _Skip(f"truncated encapsulated pixel data: fragment runs {pos - size} bytes past end of file")


def _is_deflated(ds: pydicom.Dataset) -> bool:
    return str(ds.file_meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian


def _check_deflated_pixel_data(path: Path) -> None:
    """Deflated Explicit VR Little Endian compresses the whole dataset, so the file offset of the pixel data
    is unknown without inflating it: read it (rare, and such files are small) and check the length."""
    with tags.lenient_reading():
        ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise _Skip("no pixel data (not an image)")
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
    if len(ds.PixelData) < expected:
        raise _Skip(f"truncated pixel data: {len(ds.PixelData)} of {expected} bytes present")


def read_header(path: Path) -> _Header:
    """Read one file's header (no pixels); raise _Skip with the reason if it is not a usable slice.

    Every geometry tag is checked here (:func:`spine_seg.dicom.tags.geometry_tags`): a damaged or implausible
    value skips the file with one line naming the tag and the value, instead of failing deep in the model.

    Long on purpose: one file's tags validated in the order they are read, each with its refusal.
    """
    notes: list[str] = []
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp, tags.lenient_reading():
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            if "ImagePositionPatient" in ds and _has_geometry(ds):
                if _is_deflated(ds):
                    _check_deflated_pixel_data(path)
                else:
                    _check_pixel_data(fp, ds, size)
    except _Skip:
        raise
    except tags.TagError as exc:
        raise _Skip(f"invalid {exc}") from exc
    except InvalidDicomError as exc:
        raise _Skip(f"not DICOM ({exc})") from exc
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        struct.error,
        zlib.error,
    ) as exc:
        raise _Skip(f"unreadable DICOM header: {type(exc).__name__}: {exc}") from exc
    if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == _MEDIA_STORAGE_DIRECTORY:
        raise _Skip("DICOMDIR (a media directory, not an image)")
    missing = [
        t for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns") if t not in ds
    ]
    if missing:
        kind = "image" if "PixelData" in ds or "Rows" in ds else "non-image"
        raise _Skip(f"{kind} DICOM without patient geometry (missing {', '.join(missing)})")
    with tags.lenient_reading():
        try:
            frames = tags.parse_int(ds.get("NumberOfFrames", 1) or 1, "NumberOfFrames", 1)
            if frames > 1:
                raise _Skip(f"multi-frame DICOM ({frames} frames) is not supported; export as single-frame slices")
            ipp, iop, spacing, rows, columns = tags.geometry_tags(ds)
            thickness = tags.parse_optional_number(ds.get("SliceThickness"), "SliceThickness")
            slope = tags.parse_optional_number(ds.get("RescaleSlope"), "RescaleSlope")
            intercept = tags.parse_optional_number(ds.get("RescaleIntercept"), "RescaleIntercept")
        except tags.TagError as exc:
            raise _Skip(f"invalid {exc}") from exc
        if thickness is not None and thickness <= 0:
            notes.append(f"SliceThickness = {thickness:g}: not positive; ignored")
            thickness = None
        raw_instance = ds.get("InstanceNumber")
        instance = tags.parse_instance_number(raw_instance)
        if instance is None and raw_instance not in (None, ""):
            notes.append(
                f"{path.name}: InstanceNumber = {str(raw_instance)!r} is not an integer; "
                "slice kept and ordered by its position"
            )
        info = SliceInfo(
            path=path,
            instance_number=instance if instance is not None else -1,
            ipp=ipp,
            iop=iop,  # type: ignore[arg-type]
            pixel_spacing_mm=spacing,
            rows=rows,
            columns=columns,
            slice_thickness_mm=thickness,
            rescale_slope=slope if slope else 1.0,
            rescale_intercept=intercept or 0.0,
            photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
            transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")),
        )
        acq = AcquisitionTags(
            series_description=str(ds.get("SeriesDescription", "") or ""),
            echo_time_ms=_float(ds, "EchoTime"),
            repetition_time_ms=_float(ds, "RepetitionTime"),
            inversion_time_ms=_float(ds, "InversionTime"),
            scanning_sequence=str(ds.get("ScanningSequence", "") or ""),
        )
        study_uid = str(ds.get("StudyInstanceUID", "") or ds.get("PatientID", "") or path.parent.parent.name)
        series_uid = str(ds.get("SeriesInstanceUID", "") or path.parent.name)
    return _Header(info, study_uid, series_uid, acq, tuple(notes))


def _has_geometry(ds: pydicom.Dataset) -> bool:
    return all(t in ds for t in ("Rows", "Columns", "BitsAllocated"))


def _same_orientation(a: tuple[float, ...], b: tuple[float, ...], tol: float = 1e-3) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol


def split_into_stacks(slices: Iterable[SliceInfo]) -> tuple[list[list[SliceInfo]], list[str]]:
    """Partition a series' slices into geometrically uniform stacks, each sorted along its normal.

    A new stack starts where orientation, pixel spacing or matrix change, where a slice repeats a position
    already taken (a repeated acquisition), or where the slice gap jumps by more than 25 %.
    """
    groups: list[list[SliceInfo]] = []
    for s in slices:
        for g in groups:
            g0 = g[0]
            if (
                (g0.rows, g0.columns) == (s.rows, s.columns)
                and np.allclose(g0.pixel_spacing_mm, s.pixel_spacing_mm, atol=1e-4)
                and _same_orientation(g0.iop, s.iop)
            ):
                g.append(s)
                break
        else:
            groups.append([s])
    warnings: list[str] = []
    if len(groups) > 1:
        warnings.append(f"{len(groups)} distinct geometries (orientation, pixel spacing or matrix)")
    stacks: list[list[SliceInfo]] = []
    for g in groups:
        g.sort(key=lambda s: (s.position_mm, s.instance_number))
        layers: list[list[SliceInfo]] = []
        for s in g:
            for layer in layers:
                if abs(layer[-1].position_mm - s.position_mm) > 0.01:
                    layer.append(s)
                    break
            else:
                layers.append([s])
        if len(layers) > 1:
            warnings.append(
                f"{sum(len(x) for x in layers[1:])} slices repeat positions already acquired; kept as separate stacks"
            )
        for layer in layers:
            run = [layer[0]]
            gap = None
            for s in layer[1:]:
                d = s.position_mm - run[-1].position_mm
                if gap is not None and abs(d - gap) > 0.25 * gap:
                    warnings.append(
                        f"slice gap jumps from {gap:.2f} to {d:.2f} mm before instance {s.instance_number}: new stack"
                    )
                    stacks.append(run)
                    run, gap = [s], None
                    continue
                gap = d if gap is None else gap
                run.append(s)
            stacks.append(run)
    stacks.sort(key=lambda st: min(s.instance_number for s in st))
    for st in stacks:
        inst = [s.instance_number for s in st]
        if inst != sorted(inst) and inst != sorted(inst, reverse=True):
            warnings.append("instance numbers do not follow slice position; slices sorted by position")
            break
    return stacks, warnings


def _series_ids(headers: list[_Header]) -> dict[tuple[str, str], str]:
    """Folder name where a folder holds exactly one whole series, else the SeriesInstanceUID."""
    dirs_of_series: dict[tuple[str, str], set[Path]] = defaultdict(set)
    series_of_dir: dict[Path, set[tuple[str, str]]] = defaultdict(set)
    for h in headers:
        key = (h.study_uid, h.series_uid)
        dirs_of_series[key].add(h.info.path.parent)
        series_of_dir[h.info.path.parent].add(key)
    out = {}
    for key, dirs in dirs_of_series.items():
        (d,) = dirs if len(dirs) == 1 else (None,)
        out[key] = d.name if d is not None and len(series_of_dir[d]) == 1 else key[1]
    return out


def scan_folder(
    root: str | Path,
    series_csv: str | Path | Mapping[tuple[str, str], SeriesKind] | None = None,
) -> list[Study]:
    """Read every DICOM header under ``root`` and group it into studies, sorted by study id.

    Unusable files are skipped and logged with the reason (kept in ``Study.skipped``); a folder with no
    usable image series raises :class:`NoImageSeriesError` naming the folder and what it found.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    files = list(walk_files(root))  # symlinked series folders followed, loops walked once
    table = read_series_csv(series_csv) if isinstance(series_csv, (str, Path)) else series_csv
    csv_name = Path(series_csv).name if isinstance(series_csv, (str, Path)) else "series descriptions"

    headers: list[_Header] = []
    skipped: list[SkippedFile] = []
    for p in files:
        try:
            headers.append(read_header(p))
        except _Skip as exc:
            log.warning("skipping %s: %s", p, exc)
            skipped.append(SkippedFile(p, str(exc)))
    if not headers:
        reasons: dict[str, int] = defaultdict(int)
        for s in skipped:
            reasons[s.reason.split(" (")[0].split(":")[0]] += 1
        found = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "no files at all"
        raise NoImageSeriesError(f"{root}: no usable image series; found {len(files)} files: {found}")

    ids = _series_ids(headers)
    by_study: dict[str, dict[tuple[str, str], list[_Header]]] = defaultdict(lambda: defaultdict(list))
    for h in headers:
        by_study[h.study_uid][(h.study_uid, h.series_uid)].append(h)

    studies = []
    for study_uid in sorted(by_study):
        series_list = []
        for key, hs in by_study[study_uid].items():
            series_id = ids[key]
            raw_stacks, warnings = split_into_stacks(h.info for h in hs)
            stacks = tuple(Stack(study_uid, series_id, i, tuple(st)) for i, st in enumerate(raw_stacks))
            kind, evidence, kind_warnings = infer_kind(
                stacks[0].iop, hs[0].tags, listed_kind(table, study_uid, series_id), csv_name
            )
            if table and listed_kind(table, study_uid, series_id) is None:
                kind_warnings = (*kind_warnings, f"series not listed in {csv_name}; kind inferred from headers")
            notes = tuple(dict.fromkeys(n for h in hs for n in h.notes))
            series_list.append(
                Series(
                    study_uid,
                    series_id,
                    kind,
                    evidence,
                    stacks,
                    hs[0].tags.series_description,
                    (*warnings, *kind_warnings, *notes),
                )
            )
        series_list.sort(key=lambda s: (list(SeriesKind).index(s.kind), s.series_id))
        study_root = Path(os.path.commonpath([h.info.path.parent for hs in by_study[study_uid].values() for h in hs]))
        study_skipped = tuple(s for s in skipped if study_root in s.path.parents)
        studies.append(Study(study_uid, study_root, tuple(series_list), _study_warnings(series_list), study_skipped))
    return studies


def _study_warnings(series: list[Series]) -> tuple[str, ...]:
    kinds = [s.kind for s in series]
    out = [
        f"no {k.value} series"
        for k in (SeriesKind.SAGITTAL_T1, SeriesKind.SAGITTAL_T2, SeriesKind.AXIAL_T2)
        if k not in kinds
    ]
    out += [
        f"{kinds.count(k)} {k.value} series"
        for k in dict.fromkeys(kinds)
        if kinds.count(k) > 1 and k is not SeriesKind.UNKNOWN
    ]
    return tuple(out)


def load_study(root: str | Path, series_csv: str | Path | None = None) -> Study:
    """Scan a folder that must hold exactly one study."""
    studies = scan_folder(root, series_csv)
    if len(studies) != 1:
        raise NoImageSeriesError(
            f"{root}: expected one study, found {len(studies)}: {[s.study_id for s in studies]}; pass a single study "
            "folder"
        )
    return studies[0]
