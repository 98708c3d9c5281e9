"""Label volume (spineseg labels on the Sagittal T2 stack) → per-level landmarks in patient space (LPS mm).

A predicted mask is evidence, not truth: nnU-Net may call L4 "L5", split a disc in two, miss one, or see
only part of the spine when the field of view is short. So level names are *not* read from the label ids.
Instead:

1. every disc-labelled voxel (any of the five disc labels) is grouped into connected components; tiny ones
   are dropped as spurious;
2. the components are ordered along the spine's own axis, fitted through the disc and vertebra centroids in
   patient space (never the image's row axis), pointing to the patient's head (+z in LPS);
3. gaps (a missed disc) are found from the spacing between consecutive discs, fragments of one disc are
   merged;
4. the order is anchored on the sacrum: the disc just above the sacrum's upper endplate is L5/S1. Without a
   trustworthy sacrum the mask's own disc labels vote for the offset, and the result is marked ``unsure``;
5. everything that disagrees (two components claiming one level, labels out of order, a level the mask
   names differently from the anchor, gaps) is reported as a warning and lowers the level's confidence.

Each level then gets its disc centroid, the centroids of the vertebral bodies above and below (vertebra
voxels of any label inside the disc's cross-section between neighbouring disc planes, so posterior elements
and label mistakes do not pull them), the spinal canal point (centroid of the canal label in a slab around
the disc plane, or the disc's posterior margin without a canal; then moved onto the study's mid-sagittal
plane, where readers mark it, keeping the level's own canal centre for the foramina and lateral recesses)
and a lateral foramen offset estimated from the disc's width. ``project.py`` takes these into the other series.

A mask with vertebral bodies but no discs (MyoSegmenTUM's labels L1–L5, or a model trained on them) goes to
:func:`landmarks_from_vertebrae`: each disc is placed midway between the facing endplates of the bodies
around it, the canal point is estimated behind the bodies, L5/S1 needs a sacrum label, and the level names
come from the sacrum when there is one, else from the labels (``unsure``).
"""

from __future__ import annotations

from spine_seg.landmarks.components import load_label_volume
from spine_seg.landmarks.frame import disc_frame
from spine_seg.landmarks.from_discs import landmarks_from_labels
from spine_seg.landmarks.from_points import landmarks_from_points
from spine_seg.landmarks.from_vertebrae import landmarks_from_vertebrae
from spine_seg.landmarks.types import (
    CANAL_BEHIND_BODY_MM,
    CANAL_LABEL,
    DEFAULT_FORAMEN_OFFSET_MM,
    DISC_LABELS,
    FORAMEN_OFFSET_PER_HALF_WIDTH,
    FORAMEN_OFFSET_RANGE_MM,
    FRAGMENT_FRACTION,
    LEVEL_OF_DISC_LABEL,
    LOWER_VERTEBRA,
    MIN_COMPONENT_FRACTION,
    MIN_COMPONENT_MM3,
    PRIOR_DISC_SPACING_MM,
    SACRUM_LABEL,
    TYPICAL_DISC_HEIGHT_MM,
    UPPER_VERTEBRA,
    VERTEBRA_DISC_CONFIDENCE,
    VERTEBRA_LABELS,
    VERTEBRA_NAMES,
    LandmarkSet,
    LevelLandmark,
    MissingLevel,
)

__all__ = [
    "CANAL_BEHIND_BODY_MM",
    "CANAL_LABEL",
    "DEFAULT_FORAMEN_OFFSET_MM",
    "DISC_LABELS",
    "FORAMEN_OFFSET_PER_HALF_WIDTH",
    "FORAMEN_OFFSET_RANGE_MM",
    "FRAGMENT_FRACTION",
    "LEVEL_OF_DISC_LABEL",
    "LOWER_VERTEBRA",
    "LandmarkSet",
    "LevelLandmark",
    "MIN_COMPONENT_FRACTION",
    "MIN_COMPONENT_MM3",
    "MissingLevel",
    "PRIOR_DISC_SPACING_MM",
    "SACRUM_LABEL",
    "TYPICAL_DISC_HEIGHT_MM",
    "UPPER_VERTEBRA",
    "VERTEBRA_DISC_CONFIDENCE",
    "VERTEBRA_LABELS",
    "VERTEBRA_NAMES",
    "disc_frame",
    "landmarks_from_labels",
    "landmarks_from_points",
    "landmarks_from_vertebrae",
    "load_label_volume",
]
