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


def _last_line(exc: BaseException, plugin: str) -> str:
    """The reason in a decoder's error, for one line: pydicom's message lists each plugin's on a line of its
    own (``"  pillow: Truncated File Read"``), so the last line, without the plugin's name said twice."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    last = text.splitlines()[-1].strip()
    return last.removeprefix(f"{plugin}:").strip() or last


def _decode(ds: pydicom.Dataset) -> np.ndarray:
    """``ds.pixel_array``, trying GDCM last: on a damaged JPEG 2000 or JPEG-LS codestream GDCM aborts the whole
    process (a C++ exception nothing in Python can catch), which would end a batch at one bad file. Where
    another decoder is installed for the syntax it decides, and its refusal stands; GDCM decodes only syntaxes
    nothing else can (JPEG Lossless)."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or not getattr(syntax, "is_compressed", False):
        return ds.pixel_array
    try:
        from pydicom.pixels.decoders.base import get_decoder

        plugins = get_decoder(syntax).available_plugins
    except (NotImplementedError, ValueError, ImportError):
        return ds.pixel_array
    safer = [p for p in plugins if p != "gdcm"]
    if not safer:
        return ds.pixel_array
    errors = []
    for plugin in safer:
        try:
            return ds.pixel_array_options(decoding_plugin=plugin) or ds.pixel_array  # type: ignore[func-returns-value]
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            errors.append(f"{plugin}: {_last_line(exc, plugin)}")
        finally:
            ds.pixel_array_options(decoding_plugin="")
    raise RuntimeError("; ".join(errors))


def load_slice(info: SliceInfo) -> np.ndarray:
    """One slice as float32 [row, column] in rescaled units; MONOCHROME1 is inverted to read like MONOCHROME2."""
    try:
        ds = pydicom.dcmread(info.path)
    except (OSError, ValueError, EOFError) as exc:
        raise PixelDataError(f"{info.path}: unreadable file: {exc}") from exc
    try:
        arr = _decode(ds)
    except (NotImplementedError, RuntimeError) as exc:
        syntax = getattr(ds.file_meta.get("TransferSyntaxUID"), "name", "unknown transfer syntax")
        raise PixelDataError(f"{info.path}: cannot decode pixel data ({syntax}): {exc}; {_DECODER_HINT}") from exc
    except (OSError, ValueError, EOFError, AttributeError, KeyError) as exc:
        raise PixelDataError(f"{info.path}: unreadable pixel data: {exc}") from exc
    if arr.shape != (info.rows, info.columns):
        raise PixelDataError(
            f"{info.path}: pixel array shape {arr.shape} != header Rows×Columns {(info.rows, info.columns)}"
        )
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
