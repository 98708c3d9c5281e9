"""Label maps kept as data, in one place: SPIDER's mask values and spineseg's own segmentation labels.

SPIDER (van der Graaf et al. 2024) masks: vertebrae 1–25, spinal canal 100, vertebrae only partly in view
101–125 (100 + the vertebra's number), intervertebral discs 201–225 (200 + the number of the vertebra
below the disc). spineseg assumes vertebrae are numbered **upwards from the sacrum**: 1 = sacrum, 2 = L5,
… 6 = L1, 7 = T12, so disc 201 is L5/S1 and 205 is L1/L2. Public write-ups disagree on whether counting
starts at the sacrum or at L5; the segmentation converter checks the assumption against real masks, and
changing it means changing only ``SPIDER_VERTEBRA_NUMBER`` below.

OPEN (segmentation issue): the evidence gathered since points the other way — SPIDER's own
``overview.csv`` never has more vertebrae than discs (``num_vertebrae - num_discs`` is 0 or −1 over all
447 series, impossible if the sacrum were a labelled vertebra), and the challenge's baseline page says
"vertebrae numbered from the bottom (i.e. L5 = 1) … L5/S1 = 201". The likely truth is L5 = 1, discs
200 + the number of the vertebra above, and no sacrum label. Switching needs the synthetic cohort to carry
the sacrum in a spineseg-native mask (level anchoring uses it), so it is left for that change; the SPIDER
converter checks every real mask against the current table and reports mismatches
(see docs/nnunet-datasets.md).
"""

from __future__ import annotations

from spine_seg.constants import LEVELS

#: Vertebra names from cranial to caudal as spineseg uses them.
VERTEBRAE: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S")
#: The disc below each vertebra, keyed by the upper vertebra.
DISC_BELOW: dict[str, str] = {"T11": "t11_t12", "T12": "t12_l1", **dict(zip(("L1", "L2", "L3", "L4", "L5"), LEVELS, strict=True))}

#: SPIDER vertebra number of each vertebra (see the module docstring for the assumption).
SPIDER_VERTEBRA_NUMBER: dict[str, int] = {"S": 1, "L5": 2, "L4": 3, "L3": 4, "L2": 5, "L1": 6, "T12": 7, "T11": 8}
SPIDER_CANAL = 100
SPIDER_PARTIAL_OFFSET = 100
SPIDER_DISC_OFFSET = 200


def spider_disc_label(upper_vertebra: str) -> int:
    """SPIDER's value for the disc below ``upper_vertebra``: 200 + the number of the vertebra under it."""
    order = VERTEBRAE
    if upper_vertebra not in order[:-1]:
        raise ValueError(f"no disc below {upper_vertebra!r}; valid: {list(order[:-1])}")
    below = order[order.index(upper_vertebra) + 1]
    return SPIDER_DISC_OFFSET + SPIDER_VERTEBRA_NUMBER[below]


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
    lut = {SPIDER_CANAL: SEG_LABELS["spinal_canal"], SPIDER_VERTEBRA_NUMBER["S"]: SEG_LABELS["sacrum"]}
    for name in ("L1", "L2", "L3", "L4", "L5"):
        lut[SPIDER_VERTEBRA_NUMBER[name]] = SEG_LABELS[name]
        lut[spider_disc_label(name)] = SEG_DISC_OF_LEVEL[DISC_BELOW[name]]
    return lut
