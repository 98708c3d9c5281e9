"""Pixel loading: decode, rescale, and fail with the file's name when a decoder is missing or data is bad."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pydicom

from spine_seg.dicom.model import PixelDataError

if TYPE_CHECKING:
    from spine_seg.dicom.model import SliceInfo, Stack

#: Transfer syntaxes whose decoders come with ``pydicom[pixeldata]`` rather than plain pydicom.
_DECODER_HINT = (
    "install the decoders with `pip install 'pydicom[pixeldata]'` "
    "(pylibjpeg-openjpeg for JPEG 2000, pyjpegls for JPEG-LS, python-gdcm for JPEG Lossless)"
)


def load_slice(info: SliceInfo) -> np.ndarray:
    """One slice as float32 [row, column] in rescaled units; MONOCHROME1 is inverted to read like MONOCHROME2."""
    try:
        ds = pydicom.dcmread(info.path)
    except (OSError, ValueError, EOFError) as exc:
        raise PixelDataError(f"{info.path}: unreadable file: {exc}") from exc
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        syntax = getattr(ds.file_meta.get("TransferSyntaxUID"), "name", "unknown transfer syntax")
        raise PixelDataError(f"{info.path}: cannot decode pixel data ({syntax}): {exc}; {_DECODER_HINT}") from exc
    except (OSError, ValueError, EOFError, AttributeError, KeyError) as exc:
        raise PixelDataError(f"{info.path}: unreadable pixel data: {exc}") from exc
    if arr.shape != (info.rows, info.columns):
        raise PixelDataError(f"{info.path}: pixel array shape {arr.shape} != header Rows×Columns {(info.rows, info.columns)}")
    out = arr.astype(np.float32) * np.float32(info.rescale_slope) + np.float32(info.rescale_intercept)
    if info.photometric == "MONOCHROME1":
        out = out.max() - out
    return out


def load_stack(stack: Stack) -> np.ndarray:
    """A stack as float32 ``[k, j, i]`` in the stack's sorted slice order."""
    out = np.empty(stack.shape, dtype=np.float32)
    for k, info in enumerate(stack.slices):
        out[k] = load_slice(info)
    return out
