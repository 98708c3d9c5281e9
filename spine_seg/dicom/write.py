"""Write MR slices as DICOM with real patient geometry, laid out and anonymised like the competition's.

The synthetic cohort and the test fixtures both write through here, so what they produce is read back by
the same scanner as real data, quirks included: no Modality, SeriesDescription only ``T1``/``T2``,
SOPInstanceUID ``<study>.1.<instance>`` repeated across series, one FrameOfReferenceUID per series.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

from spine_seg.core.errors import UsageError

#: Transfer syntaxes spineseg can write (encoders that ship with pydicom[pixeldata]).
WRITABLE_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": UID("1.2.840.10008.1.2.4.80"),
    "jpeg2000": UID("1.2.840.10008.1.2.4.90"),
}
_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")


def _ds_str(v: float) -> str:
    """A DS value string of at most 16 characters, as DICOM requires."""
    s = f"{v:.10g}"
    if len(s) > 16:
        s = f"{v:.8g}"
    return s


def write_slice(
    path: str | Path,
    pixels: np.ndarray,
    *,
    study_id: str,
    series_id: str,
    instance_number: int,
    ipp: tuple[float, float, float] | np.ndarray,
    iop: tuple[float, ...] | np.ndarray,
    pixel_spacing_mm: tuple[float, float],
    slice_thickness_mm: float | None = None,
    spacing_between_slices_mm: float | None = None,
    series_description: str = "T2",
    syntax: str = "explicit",
    extra: Mapping[str, Any] | None = None,
    omit: tuple[str, ...] = (),
    frame_of_reference_uid: str | None = None,
) -> Path:
    """Write one uint16 slice ``pixels[row, column]``; returns the path.

    ``extra`` sets further keywords (EchoTime, RescaleSlope, ...); ``omit`` drops tags after they are set,
    which is how tests build files that lack an optional tag.
    """
    if syntax not in WRITABLE_SYNTAXES:
        raise UsageError(f"unknown transfer syntax {syntax!r}; valid: {list(WRITABLE_SYNTAXES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(np.clip(pixels, 0, 65535).astype(np.uint16))
    sop_uid = f"{study_id}.1.{instance_number}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")

    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPInstanceUID = sop_uid
    ds.SeriesDescription = series_description
    ds.PatientID = str(study_id)
    ds.StudyInstanceUID = str(study_id)
    ds.SeriesInstanceUID = f"{study_id}.{series_id}"
    ds.InstanceNumber = int(instance_number)
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [_ds_str(float(v)) for v in ipp]
    ds.ImageOrientationPatient = [_ds_str(float(v)) for v in iop]
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid(entropy_srcs=[str(study_id), str(series_id)])
    ds.PixelSpacing = [_ds_str(float(v)) for v in pixel_spacing_mm]
    if slice_thickness_mm is not None:
        ds.SliceThickness = _ds_str(float(slice_thickness_mm))
    if spacing_between_slices_mm is not None:
        ds.SpacingBetweenSlices = _ds_str(float(spacing_between_slices_mm))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = arr.tobytes()
    if syntax != "explicit":
        ds.compress(WRITABLE_SYNTAXES[syntax], arr, generate_instance_uid=False)
    for key in omit:
        if key in ds:
            delattr(ds, key)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_stack(
    folder: str | Path,
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    study_id: str,
    series_id: str,
    first_instance: int = 1,
    instance_order: np.ndarray | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Write ``volume[k, j, i]`` whose voxel → LPS affine is given; files are named ``<instance>.dcm``.

    ``instance_order`` maps k → instance number offset (a permutation), to write shuffled instance numbers.
    """
    affine = np.asarray(affine, dtype=float)
    col_vec, row_vec, step = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    col_sp, row_sp = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    iop = np.concatenate([col_vec / col_sp, row_vec / row_sp])
    order = np.arange(volume.shape[0]) if instance_order is None else np.asarray(instance_order)
    paths = []
    for k in range(volume.shape[0]):
        ipp = affine[:3, 3] + k * step
        inst = first_instance + int(order[k])
        paths.append(
            write_slice(
                Path(folder) / f"{inst}.dcm",
                volume[k],
                study_id=study_id,
                series_id=series_id,
                instance_number=inst,
                ipp=ipp,
                iop=iop,
                pixel_spacing_mm=(row_sp, col_sp),
                spacing_between_slices_mm=float(np.linalg.norm(step)),
                **kwargs,
            )
        )
    return paths
