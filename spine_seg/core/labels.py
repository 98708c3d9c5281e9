"""Label maps kept as data, in one place: SPIDER's mask values and spineseg's own segmentation labels.

SPIDER (van der Graaf et al. 2024) masks: vertebrae 1-25 numbered **upwards from L5** (L5 = 1, L4 = 2,
... L1 = 5, T12 = 6), spinal canal 100, vertebrae only partly in view 101-125 (100 + the vertebra's number),
intervertebral discs 201-225 (200 + the number of the vertebra above the disc: L5/S1 = 201,
L1/L2 = 205). The sacrum is not labelled. Evidence: the challenge's baseline description ("vertebrae
numbered from the bottom (i.e. L5 = 1) ... L5/S1 = 201") and SPIDER's own overview.csv, where
``num_vertebrae - num_discs`` is 0 or -1 in all 447 series, impossible if the sacrum were a labelled
vertebra. (An earlier assumption, sacrum = 1, matches MRSpineSeg, another dataset.) The SPIDER converter
checks every real mask against this table and reports a mismatch.

spineseg's level anchoring likes a sacrum, so the synthetic cohort writes its sacrum into the
SPIDER-layout masks with ``SYNTHETIC_SACRUM`` (99), a value SPIDER never uses; real SPIDER masks lack it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from spine_seg.core.constants import LEVELS
from spine_seg.core.errors import UsageError

#: Vertebra names from cranial to caudal as spineseg uses them.
VERTEBRAE: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S")
#: The disc below each vertebra, keyed by the upper vertebra.
DISC_BELOW: dict[str, str] = {
    "T11": "t11_t12",
    "T12": "t12_l1",
    **dict(zip(("L1", "L2", "L3", "L4", "L5"), LEVELS, strict=True)),
}

#: SPIDER vertebra number of each vertebra (see the module docstring for the assumption).
SPIDER_VERTEBRA_NUMBER: dict[str, int] = {"L5": 1, "L4": 2, "L3": 3, "L2": 4, "L1": 5, "T12": 6, "T11": 7}
#: spineseg's extension: the sacrum in synthetic SPIDER-layout masks (not a SPIDER value).
SYNTHETIC_SACRUM = 99
SPIDER_CANAL = 100
SPIDER_PARTIAL_OFFSET = 100
SPIDER_DISC_OFFSET = 200


def spider_disc_label(upper_vertebra: str) -> int:
    """SPIDER's value for the disc below ``upper_vertebra``: 200 + the number of the vertebra above it."""
    if upper_vertebra not in SPIDER_VERTEBRA_NUMBER:
        raise UsageError(f"no disc below {upper_vertebra!r}; valid: {list(SPIDER_VERTEBRA_NUMBER)}")
    return SPIDER_DISC_OFFSET + SPIDER_VERTEBRA_NUMBER[upper_vertebra]


#: spineseg's segmentation labels (nnU-Net needs them consecutive from 0).
SEG_LABELS: dict[str, int] = {
    "background": 0,
    "L1": 1,
    "L2": 2,
    "L3": 3,
    "L4": 4,
    "L5": 5,
    "sacrum": 6,
    "disc_l1_l2": 7,
    "disc_l2_l3": 8,
    "disc_l3_l4": 9,
    "disc_l4_l5": 10,
    "disc_l5_s1": 11,
    "spinal_canal": 12,
}
SEG_DISC_OF_LEVEL: dict[str, int] = {lv: SEG_LABELS[f"disc_{lv}"] for lv in LEVELS}


def spider_to_seg_lut() -> dict[int, int]:
    """SPIDER mask value → spineseg label; values not listed (T12 and above, partial vertebrae) map to 0."""
    lut = {SPIDER_CANAL: SEG_LABELS["spinal_canal"], SYNTHETIC_SACRUM: SEG_LABELS["sacrum"]}
    for name in ("L1", "L2", "L3", "L4", "L5"):
        lut[SPIDER_VERTEBRA_NUMBER[name]] = SEG_LABELS[name]
        lut[spider_disc_label(name)] = SEG_DISC_OF_LEVEL[DISC_BELOW[name]]
    return lut


#: What SPIDER's partly visible vertebrae (101–125) become in a remap (see :func:`spider_lut`).
PARTIAL_MODES: tuple[str, ...] = ("background", "keep", "ignore")
#: The highest SPIDER vertebra number (SPIDER numbers up to 25 vertebrae).
SPIDER_MAX_VERTEBRA = 25


def spider_lut(partial: str = "background") -> dict[int, int]:
    """SPIDER value → spineseg label, ``partial`` says what 101–125 become.

    ``background`` (default): partly visible vertebrae → 0. ``keep``: 100+n → the label of n.
    ``ignore``: 100+n → nnU-Net's ignore label (one above the highest label) where n has a label, so those
    voxels do not count in the loss.
    """
    if partial not in PARTIAL_MODES:
        raise UsageError(f"unknown partial mode {partial!r}; valid: {list(PARTIAL_MODES)}")
    lut = dict(spider_to_seg_lut())
    vertebrae = {v: t for v, t in lut.items() if 1 <= v <= SPIDER_MAX_VERTEBRA}
    if partial == "keep":
        lut.update({SPIDER_PARTIAL_OFFSET + v: t for v, t in vertebrae.items()})
    elif partial == "ignore":
        ignore = len(SEG_LABELS)
        lut.update({SPIDER_PARTIAL_OFFSET + v: ignore for v in vertebrae})
    return lut


def seg_labels_from_spider(mask: ArrayLike, keep_partial: bool = True) -> np.ndarray:
    """SPIDER mask values → spineseg labels (uint8), through :func:`spider_lut`.

    ``keep_partial`` also maps SPIDER's partly visible vertebrae (100 + number) to their vertebra: the
    sacrum nearly always touches the edge of a sagittal field of view, and without it there is no anchor
    for the level names. Values outside the lookup (T12 and above, their discs) become background.
    """
    mask = np.asarray(mask)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or not np.all(mask == np.round(mask)):
            raise UsageError("SPIDER mask holds non-integer values; expected integer labels")
    mask = mask.astype(np.int64)
    if mask.size and mask.min() < 0:
        raise UsageError(f"SPIDER mask holds negative values (min {mask.min()}); expected labels ≥ 0")
    lut = spider_lut("keep" if keep_partial else "background")
    if mask.size == 0:
        return mask.astype(np.uint8)
    table = np.zeros(int(max(mask.max(), max(lut))) + 1, dtype=np.uint8)
    for k, v in lut.items():
        table[k] = v
    return table[mask]


#: The base model's labels: structures, not levels. A network that must tell L3 from L4 by their look fails
#: on a partial field of view or a transitional spine; one that finds "a vertebral body", "a disc", "the
#: sacrum" and "the canal" does not, and the landmark stage names the levels by counting (see
#: :func:`spine_seg.landmarks.structures.seg_labels_from_base`). Vertebra means the vertebral body only:
#: the real volumes we train on (VB2, MyoSegmenTUM) label bodies, not posterior elements.
BASE_LABELS: dict[str, int] = {
    "background": 0,
    "vertebra": 1,
    "sacrum": 2,
    "disc": 3,
    "spinal_canal": 4,
}
#: nnU-Net v2's ignore label for the base dataset (the highest value, as nnU-Net requires): voxels whose
#: class the source does not know (the discs, canal and sacrum of a bodies-only real mask) add no loss.
BASE_IGNORE = len(BASE_LABELS)

#: The label maps a segmentation model may carry, by name (a bundle's manifest records which one).
LABEL_SCHEMES: dict[str, dict[str, int]] = {"levels": SEG_LABELS, "base": BASE_LABELS}


def label_scheme_of(labels: dict[str, int]) -> str:
    """Which of :data:`LABEL_SCHEMES` a ``{name: value}`` map is (nnU-Net's ``ignore`` entry aside)."""
    names = {k: v for k, v in labels.items() if k != "ignore"}
    for scheme, table in LABEL_SCHEMES.items():
        if names == table:
            return scheme
    # older bundles and partial datasets (MyoSegmenTUM: L1–L5 only) use a subset of the levels scheme
    if all(SEG_LABELS.get(k) == v for k, v in names.items()):
        return "levels"
    raise UsageError(f"label map {names} matches no spineseg scheme; valid: {LABEL_SCHEMES}")
