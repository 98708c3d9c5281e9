"""Tissue classes → MR intensities: per-sequence contrast, blur, bias field, Rician noise, vendor scale."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spine_seg.core.errors import UsageError
from spine_seg.synthetic.anatomy import (
    AIR,
    ANNULUS,
    CORTEX,
    CSF,
    FAT,
    LIGAMENT,
    MARROW,
    NERVE,
    NUCLEUS,
    SOFT,
    TISSUE_NAMES,
    VESSEL,
    VISCERA,
)

#: Mean signal of each tissue per sequence (arbitrary units ~ a 12-bit scanner's range).
#: T1: fat and marrow bright, CSF dark. T2 (fast spin echo): CSF and nucleus bright, fat still bright.
#: STIR: like T2 with fat nulled.
CONTRAST: dict[str, dict[int, float]] = {
    "T1": {
        AIR: 8,
        SOFT: 260,
        FAT: 900,
        MARROW: 640,
        CORTEX: 70,
        ANNULUS: 300,
        NUCLEUS: 360,
        CSF: 150,
        NERVE: 420,
        LIGAMENT: 190,
        VESSEL: 60,
        VISCERA: 160,
    },
    "T2": {
        AIR: 8,
        SOFT: 190,
        FAT: 620,
        MARROW: 430,
        CORTEX: 50,
        ANNULUS: 140,
        NUCLEUS: 820,
        CSF: 1000,
        NERVE: 300,
        LIGAMENT: 110,
        VESSEL: 70,
        VISCERA: 120,
    },
    "STIR": {
        AIR: 8,
        SOFT: 220,
        FAT: 70,
        MARROW: 150,
        CORTEX: 40,
        ANNULUS: 160,
        NUCLEUS: 800,
        CSF: 1000,
        NERVE: 330,
        LIGAMENT: 120,
        VESSEL: 60,
        VISCERA: 110,
    },
}
assert all(len(c) == len(TISSUE_NAMES) for c in CONTRAST.values())
#: Noise standard deviation as a fraction of 1000 (real study: T1 background sd ≈ 0.3 %, T2 ≈ 1.8 % of max).
NOISE_FRACTION: dict[str, float] = {"T1": 0.006, "T2": 0.012, "STIR": 0.014}


def render(
    tissue: np.ndarray,
    sequence: str,
    rng: np.random.Generator,
    *,
    nucleus_level: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    noise_frac: float | None = None,
    vendor_scale: float = 1.0,
    blur_px: float = 0.6,
) -> np.ndarray:
    """A stack ``tissue[k, j, i]`` → uint16 pixels.

    ``nucleus_level`` (same shape, 0..1) darkens degenerated discs on T2; ``bias`` multiplies the signal
    (coil sensitivity). Noise is Rician: the magnitude of complex Gaussian noise added to the signal.
    """
    if sequence not in CONTRAST:
        raise UsageError(f"unknown sequence {sequence!r}; valid: {list(CONTRAST)}")
    table = np.zeros(len(TISSUE_NAMES), dtype=np.float32)
    for t, value in CONTRAST[sequence].items():
        table[t] = value * rng.uniform(0.9, 1.1)
    img = table[tissue]
    if nucleus_level is not None and sequence != "T1":
        img = np.where(tissue == NUCLEUS, img * (1 - 0.55 * nucleus_level), img)
    if blur_px > 0:
        img = ndimage.gaussian_filter(img, sigma=(0, blur_px, blur_px), mode="nearest")
    if bias is not None:
        img = img * bias
    sigma = np.float32((NOISE_FRACTION[sequence] if noise_frac is None else noise_frac) * 1000)
    re = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    im = sigma * rng.standard_normal(img.shape, dtype=np.float32)
    out = np.sqrt(re * re + im * im)
    # scanners floor the noise outside the body (the real T1 in shared/data is 10 % exact zeros)
    out[(tissue == AIR) & (out < 2.5 * sigma)] = 0
    out *= np.float32(vendor_scale)
    return np.clip(np.rint(out), 0, 4095).astype(np.uint16)
