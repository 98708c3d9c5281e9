"""Source image headers for the SEG and SR, completed where the competition's anonymised DICOM is not.

The competition's files (docs/dicom-and-geometry.md) lack attributes that every DICOM object referring to them
needs, and highdicom (rightly) insists on them. On in-memory copies of the headers only, never on the files:

* no SOP Class UID in the dataset (and the file meta claims *Enhanced* MR Image Storage for single-frame
  images): **MR Image Storage** is filled in, what a single-frame MR image with its own position is;
* no Modality: ``MR``;
* no Patient's Name, Birth Date, Sex, Study Date/Time, Referring Physician, Study ID, Accession Number: empty
  (type 2: present, no value), so the SEG and SR copy exactly the patient and study identity the source has;
* a Frame of Reference UID that differs per series (their patient coordinates agree nonetheless): nothing
  to fill; the SEG and the SR's 3D coordinates use the segmented Sagittal T2 series' own frame of reference,
  the one the label volume and the landmarks were computed in;
* a SOP Instance UID ``<study>.1.<instance>`` repeated in every series of a study: references are always
  made together with their series (the SEG's Referenced Series Sequence, the SR's evidence grouped by series),
  and the SR only cites images of the segmented series, so no reference is ambiguous within the objects
  spineseg writes. A viewer that indexes instances by SOP Instance UID alone may still confuse the source
  series with each other; that is the data's doing and is not repaired here (it would mean rewriting UIDs).
* a missing Frame of Reference UID (not in the competition's data, but in some exports): one is derived from
  the Series Instance UID, the same for every slice of the series.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

#: SOP Class UID of a single-frame MR image.
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
#: Type 2 patient and study attributes a derived object copies: filled in empty where missing.
TYPE2_IDENTITY: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def complete_header(ds: Dataset) -> list[str]:
    """Fill what ``ds`` lacks (see the module doc) in place; returns the keywords filled."""
    filled = []
    if "SOPClassUID" not in ds:
        ds.SOPClassUID = MR_IMAGE_STORAGE
        filled.append("SOPClassUID")
    if not ds.get("Modality"):
        ds.Modality = "MR"
        filled.append("Modality")
    if not ds.get("FrameOfReferenceUID") and ds.get("SeriesInstanceUID"):
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[str(ds.SeriesInstanceUID), "frame-of-reference"])
        filled.append("FrameOfReferenceUID")
    for keyword in TYPE2_IDENTITY:
        if keyword not in ds:
            setattr(ds, keyword, None)
            filled.append(keyword)
    return filled


def read_sources(paths: Iterable[str | Path]) -> list[Dataset]:
    """Headers (no pixels) of ``paths``, completed by :func:`complete_header`, in the given order."""
    out = []
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        complete_header(ds)
        out.append(ds)
    return out


__all__ = ["MR_IMAGE_STORAGE", "TYPE2_IDENTITY", "complete_header", "read_sources"]
