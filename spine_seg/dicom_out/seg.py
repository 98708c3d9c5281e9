"""The label volume as a DICOM Segmentation (SEG), referencing the Sagittal T2 instances it was computed on.

Why a SEG: PACS viewers (OHIF, 3D Slicer, vendor workstations) show it over the source series with each
structure named, coded and coloured, where a ``segmentation.nii.gz`` needs a research tool.

The segments come from whatever ``{value: name}`` map the result's label volume carries (the bundle's label
map), not from a fixed list: one BINARY segment per foreground label, numbered 1, 2, … in label-value order
(DICOM wants segment numbers from 1 without gaps; a label map need not be), labelled with the label's name and
typed with :func:`spine_seg.dicom_out.codes.structure_code`. Segments without a voxel are kept (their frames are
omitted), so a reader always finds the same segments for the same bundle. The frames are the source stack's
slices (the label volume lies on that stack's grid), so the SEG shares the T2 series' frame of reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from spine_seg.core.errors import UsageError
from spine_seg.dicom_out import codes

SEG_SERIES_NUMBER = 9901
SEG_SERIES_DESCRIPTION = "spineseg segmentation"


def segment_table(label_names: Mapping[int, str], labels: np.ndarray | None = None) -> list[tuple[int, int, str]]:
    """(segment number, label value, name) of each foreground label: the map's, plus any value found in
    ``labels`` that the map does not name (as ``label_<value>``), in value order."""
    names = {int(v): str(n) for v, n in label_names.items() if int(v) != 0}
    if labels is not None:
        for v in np.unique(labels).tolist():
            if v != 0 and v not in names:
                names[int(v)] = f"label_{v}"
    return [(i, v, names[v]) for i, v in enumerate(sorted(names), start=1)]


def algorithm_identification(version: str, bundle_name: str) -> hd.AlgorithmIdentificationSequence:
    """spineseg, its version and the bundle that made the segmentation."""
    return hd.AlgorithmIdentificationSequence(
        name="spineseg", family=codes.ALGORITHM_FAMILY, version=version, parameters={"bundle": bundle_name}
    )


def build_seg(
    labels_kji: np.ndarray,
    label_names: Mapping[int, str],
    sources: Sequence[Dataset],
    *,
    version: str,
    bundle_name: str,
) -> hd.seg.Segmentation:
    """A SEG of ``labels_kji`` (on the grid of ``sources``, one source dataset per k, in k order).

    ``sources``: the Sagittal T2 stack's headers, completed by :func:`spine_seg.dicom_out.sources.read_sources`
    (SOP class, modality and frame of reference where the file lacks them). Patient and study attributes are
    copied from them by highdicom; the SEG gets new series and instance UIDs.
    """
    labels = np.asarray(labels_kji)
    if labels.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise UsageError(
            f"label volume {labels.shape} does not match its {len(sources)} source slices of "
            f"{sources[0].Rows}×{sources[0].Columns}"
        )
    table = segment_table(label_names, labels)
    if not table:
        raise UsageError("the label map names no foreground label: nothing to put in a SEG")
    lut = np.zeros(int(max(v for _, v, _ in table)) + 1 if table else 1, dtype=np.uint16)
    for number, value, _ in table:
        lut[value] = number
    pixels = lut[labels.astype(np.intp)]
    if int(pixels.max()) <= 255:
        pixels = pixels.astype(np.uint8)
    algo = algorithm_identification(version, bundle_name)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name[:64],
            segmented_property_category=codes.ANATOMICAL_STRUCTURE,
            segmented_property_type=codes.structure_code(name),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            tracking_uid=hd.UID(),
            tracking_id=name[:64],
        )
        for number, _, name in table
    ]
    return hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="spineseg",
        manufacturer_model_name=bundle_name[:64] or "spineseg",
        software_versions=f"spineseg {version}",
        device_serial_number=bundle_name[:64] or "0",
        content_label="SPINESEG",
        content_description=f"spineseg {version}, bundle {bundle_name}"[:64],
        series_description=SEG_SERIES_DESCRIPTION,
        omit_empty_frames=True,
    )


def label_volume_from_seg(
    seg: hd.seg.Segmentation, source_uids: Sequence[str], label_names: Mapping[int, str]
) -> np.ndarray:
    """The label volume back from a SEG (for checks and for readers): frames in ``source_uids`` order, each
    segment's pixels set to the value its label (the segment's name) has in ``label_names``."""
    value_of = {str(n): int(v) for v, n in label_names.items()}
    numbers = seg.get_segment_numbers()
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(source_uids), segment_numbers=numbers, combine_segments=False
    )
    out = np.zeros(masks.shape[:3], dtype=np.uint8)
    for j, number in enumerate(numbers):
        name = seg.get_segment_description(number).segment_label
        if name not in value_of and name.startswith("label_"):
            value = int(name[len("label_") :])
        else:
            value = value_of[name]
        out[masks[..., j] > 0] = value
    return out


__all__ = ["SEG_SERIES_NUMBER", "algorithm_identification", "build_seg", "label_volume_from_seg", "segment_table"]
