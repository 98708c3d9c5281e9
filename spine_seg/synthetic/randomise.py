"""Domain-randomised sagittal volumes for segmentation training, in the spirit of SynthSeg.

The phantom of :mod:`spine_seg.synthetic.anatomy` gives tissue classes and labels at any point. The cohort
generator renders them with one fixed contrast per sequence, so a network trained on it learns the phantom's
look (flat boxes, three contrasts) and fails on real MRI. Here every case draws, from its own seed:

* **anatomy**: body and disc sizes, lordosis from flat to curved, collapsed dark discs, listhesis (the spine
  below a disc shifted forward or back), scoliosis (a lateral wave), and a smooth random elastic field, all
  applied as a warp of the points at which the phantom is evaluated (so labels and image stay aligned);
* **field of view**: the top anywhere from T11 to L2, the bottom anywhere from L4 to the lower sacrum, an
  oblique slab of 9–19 slices 3–6 mm thick with 0–1 mm gaps, partial volume across each slice (three
  sub-planes averaged), in-plane pixels 0.9–1.35 mm and extra blur for coarser acquisitions;
* **contrast**: per tissue a random mean (contrast inversions included: T1-, T2-, STIR-, fat-suppressed- or
  water/fat-like and everything between) or, a third of the time, a jittered realistic T1/T2/STIR table;
  spatially correlated texture inside each tissue (marrow heterogeneity, fat spots, Modic-like bands next
  to endplates), a multiplicative bias field, a gamma curve, and Rician noise that is itself spatially
  correlated.

Labels follow :data:`spine_seg.labels.BASE_LABELS` (vertebral body, sacrum, disc, canal): structures, not
level names. The phantom has no vertebrae above T11, so fields of view start at T11 or lower; the real
volumes in the base dataset (VB2 reaches T11 and beyond) show the thoracic spine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from spine_seg.core import geometry
from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import BASE_LABELS, SPIDER_CANAL, SPIDER_DISC_OFFSET, SPIDER_PARTIAL_OFFSET, SYNTHETIC_SACRUM
from spine_seg.synthetic.anatomy import (
    AIR,
    ANNULUS,
    FAT,
    MARROW,
    NUCLEUS,
    TISSUE_NAMES,
    Anatomy,
)
from spine_seg.synthetic.render import CONTRAST

#: How often each level (LEVELS order) is the one collapsed: real degeneration gathers at the lower levels,
#: and a dark thin L5/S1 disc next to a bright S1/S2 remnant is what makes counting go wrong.
COLLAPSE_LEVEL_P = (0.1, 0.1, 0.15, 0.3, 0.35)

#: How the intensities of a case were drawn (recorded in its metadata).
CONTRAST_MODES = ("random", "realistic")


@dataclass(frozen=True)
class RandomisedCase:
    """One training volume ``image[k, j, i]`` (float32, 0–1000), its base labels and voxel → LPS affine."""

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    meta: dict

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """(i, j, k) voxel spacing in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def base_labels_from_spider(spider: np.ndarray) -> np.ndarray:
    """SPIDER-layout phantom labels → :data:`BASE_LABELS` (every vertebra, whole or cut, is ``vertebra``)."""
    out = np.zeros(spider.shape, dtype=np.uint8)
    vertebra = ((spider >= 1) & (spider < SYNTHETIC_SACRUM)) | (
        (spider > SPIDER_PARTIAL_OFFSET) & (spider < SPIDER_DISC_OFFSET)
    )
    out[vertebra] = BASE_LABELS["vertebra"]
    out[spider == SYNTHETIC_SACRUM] = BASE_LABELS["sacrum"]
    out[spider > SPIDER_DISC_OFFSET] = BASE_LABELS["disc"]
    out[spider == SPIDER_CANAL] = BASE_LABELS["spinal_canal"]
    return out


def _varied_anatomy(rng: np.random.Generator) -> tuple[Anatomy, dict]:
    """A phantom anatomy with wider variation than the cohort's, and the variants it carries."""
    from spine_seg.synthetic.cohort import _rotation, sample_anatomy

    sev = rng.choice(3, size=(5, 5), p=[0.75, 0.17, 0.08])
    anat = sample_anatomy(rng, sev)
    size = rng.uniform(0.85, 1.15)
    bodies = anat.body_height_mm * size * rng.uniform(0.92, 1.08, anat.body_height_mm.shape)
    discs = anat.disc_height_mm * rng.uniform(0.75, 1.25) * rng.uniform(0.85, 1.15, anat.disc_height_mm.shape)
    degeneration = anat.disc_degeneration.copy()
    collapsed: list[str] = []
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
        li = int(rng.choice(len(LEVELS), p=COLLAPSE_LEVEL_P))  # degeneration is commonest at L4/L5 and L5/S1
        discs[li + 2] *= rng.uniform(0.3, 0.55)
        degeneration[li] = 1.0
        collapsed.append(LEVELS[li])
    rot = _rotation(rng, 8.0) @ anat.rotation
    anat = replace(
        anat,
        rotation=rot,
        radius_mm=float(rng.uniform(180, 900)),
        body_height_mm=bodies,
        disc_height_mm=discs,
        body_depth_mm=anat.body_depth_mm * size * rng.uniform(0.9, 1.1),
        body_width_mm=anat.body_width_mm * size * rng.uniform(0.9, 1.1),
        disc_degeneration=degeneration,
        sacral_remnants=_sacral_remnants(rng, size),
        sacral_taper_start_mm=float(rng.uniform(10.0, 30.0)),
    )
    return anat, {
        "collapsed_discs": sorted(set(collapsed)),
        "body_scale": round(float(size), 3),
        "sacral_remnants": len(anat.sacral_remnants),
    }


def _sacral_remnants(rng: np.random.Generator, size: float) -> tuple[tuple[float, float, int], ...]:
    """Remnant discs at S1/S2, S2/S3 and S3/S4 (most adults show at least S1/S2 on T2): (depth below the S1
    endplate, thickness, tissue). Bright (nucleus-like) or dark, thin; the segments shorten caudally."""
    if rng.random() < 0.15:  # a sacrum without visible remnants still occurs
        return ()
    out = []
    depth = 0.0
    for k, (lo, hi) in enumerate(((25.0, 33.0), (19.0, 26.0), (15.0, 21.0))):
        depth += float(rng.uniform(lo, hi)) * size
        thick = float(rng.uniform(1.5, 5.0) if k == 0 else rng.uniform(1.0, 3.0))
        tissue = NUCLEUS if rng.random() < (0.6 if k == 0 else 0.35) else ANNULUS
        out.append((round(depth, 2), round(thick, 2), int(tissue)))
    return tuple(out)


class _Warp:
    """A smooth displacement field d(p) in LPS mm: scoliosis, listhesis and a random elastic part.

    The phantom is evaluated at ``p - d(p)``, which moves the anatomy by about ``+d``.
    """

    def __init__(self, anat: Anatomy, rng: np.random.Generator):
        self.centre = anat.to_world(0.0, 0.0, 0.0).astype(np.float32)
        self.scoliosis = (
            float(rng.uniform(0, 14)) if rng.random() < 0.4 else 0.0,
            float(rng.uniform(220, 520)),
            float(rng.uniform(0, 2 * np.pi)),
        )
        self.listhesis = None
        if rng.random() < 0.3:
            level = LEVELS[int(rng.integers(2, len(LEVELS)))]
            s = anat.disc_centre_s(level)
            up = anat.to_world(s + 1, 0, 0) - anat.to_world(s - 1, 0, 0)
            self.listhesis = (
                level,
                anat.to_world(s, 0, 0).astype(np.float32),
                (up / np.linalg.norm(up)).astype(np.float32),
                float(rng.choice([-1, 1]) * rng.uniform(3, 10)),
            )
        n = 4
        self.k = rng.uniform(-1, 1, (n, 3)) * (2 * np.pi / rng.uniform(45, 150, (n, 1)))
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.amp = rng.uniform(-1, 1, (n, 3)) * rng.uniform(0, 3.0)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        q = p - self.centre
        d = np.zeros_like(p)
        a, wavelength, phase = self.scoliosis
        if a:
            d[..., 0] += a * np.sin(2 * np.pi * q[..., 2] / wavelength + phase)
        if self.listhesis is not None:
            _, c, up, shift = self.listhesis
            t = (p - c) @ up
            d[..., 1] += shift / (1 + np.exp(np.clip(t / 2.0, -30, 30)))  # below the disc: shifted along y (A–P)
        phase_ = q @ self.k.T.astype(np.float32) + self.phase.astype(np.float32)
        d += np.sin(phase_) @ self.amp.astype(np.float32)
        return d

    def describe(self) -> dict:
        return {
            "scoliosis_mm": round(self.scoliosis[0], 1),
            "listhesis": None
            if self.listhesis is None
            else {"level": self.listhesis[0], "shift_mm": round(self.listhesis[3], 1)},
        }


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: tuple[float, ...]) -> np.ndarray:
    """Unit-variance Gaussian noise blurred by ``sigma_px`` (spatially correlated texture)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=sigma_px, mode="reflect")
    sd = float(f.std())
    return f / sd if sd > 0 else f


def _intensity_means(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One mean per tissue class in [0, 1]: fully random, or a jittered real sequence's table."""
    if rng.random() < 1 / 3:
        seq = str(rng.choice(list(CONTRAST)))
        table = np.array([CONTRAST[seq][t] for t in range(len(TISSUE_NAMES))], dtype=np.float32) / 1000.0
        means = table * rng.uniform(0.7, 1.3, table.shape).astype(np.float32)
        return np.clip(means, 0, 1.2), f"realistic-{seq}"
    means = rng.uniform(0, 1, len(TISSUE_NAMES)).astype(np.float32)
    if rng.random() < 0.7:
        means[AIR] = rng.uniform(0, 0.05)  # most scanners: dark outside the body
    return means, "random"


def randomised_case(seed: int, *, spacing_mm: float | None = None) -> RandomisedCase:
    """One domain-randomised sagittal volume, fully determined by ``seed``.

    Long on purpose: anatomy, field of view, slice geometry, contrast and acquisition are drawn in this order
    from one seeded generator; split up, the order of the draws (and so every seed's case) would hang on
    the call order of a dozen helpers passing the same arrays around."""
    rng = np.random.default_rng(np.random.SeedSequence([20241, int(seed)]))
    anat, variants = _varied_anatomy(rng)
    warp = _Warp(anat, rng)
    px = float(spacing_mm if spacing_mm is not None else rng.uniform(0.9, 1.35))
    thickness = float(rng.uniform(3.0, 6.0))
    gap = float(rng.uniform(0.0, 1.0))
    n_slices = int(rng.integers(9, 20))

    # field of view: from somewhere between T11 and L2 down to somewhere between L4 and the lower sacrum
    # (two thirds of the time a clinical lumbar protocol: T11–L1 down into the sacrum)
    b = anat.boundaries_mm
    if rng.random() < 2 / 3:
        s_top = float(rng.uniform(np.mean(anat.body_range("L1")), b[0] - 2))
        s_bottom = float(rng.uniform(anat.s_sacrum_top - 85, anat.s_sacrum_top - 25))
    else:
        s_top = float(rng.uniform(np.mean(anat.body_range("L2")), b[0] - 2))
        s_bottom = float(rng.uniform(anat.s_sacrum_top - 85, np.mean(anat.body_range("L4"))))
    from spine_seg.synthetic.cohort import _rotation

    tilt = _rotation(rng, 12.0)
    row = tilt @ anat.rotation @ np.array([0.0, 1.0, 0.0])  # along a row: posterior
    col = tilt @ anat.rotation @ np.array([0.0, 0.0, -1.0])  # down a column: feet
    step = np.cross(col, row)
    top, bottom = anat.to_world(s_top, 0, 0), anat.to_world(s_bottom, 0, 0)
    extent = max(float(np.dot(bottom - top, col)), 80.0)
    rows = int(np.ceil(extent / px)) + 1
    ap_mm = float(rng.uniform(150, 260))
    cols = int(np.ceil(ap_mm / px))
    mid = (top + bottom) / 2
    centre = mid + np.dot(anat.to_world(0.0, -12.0 + rng.uniform(-25, 25), 0.0) - mid, row) * row
    centre = centre + rng.uniform(-8, 8) * step
    spacing_k = thickness + gap
    first = centre - (cols - 1) / 2 * px * row - (rows - 1) / 2 * px * col - (n_slices - 1) / 2 * spacing_k * step
    first = first + (np.dot(top - first, col)) * col  # row 0 at the chosen top
    affine = geometry.affine_from_headers(first, (*row, *col), (px, px), step * spacing_k)

    # partial volume: three sub-planes across each slice; the middle one gives the labels
    k, j, i = np.meshgrid(
        np.arange(n_slices, dtype=np.float32),
        np.arange(rows, dtype=np.float32),
        np.arange(cols, dtype=np.float32),
        indexing="ij",
    )
    base = (
        first.astype(np.float32)
        + i[..., None] * (row * px).astype(np.float32)
        + j[..., None] * (col * px).astype(np.float32)
        + k[..., None] * (step * spacing_k).astype(np.float32)
    )
    del k, j, i
    means, mode = _intensity_means(rng)
    stds = rng.uniform(0.0, 0.12, len(TISSUE_NAMES)).astype(np.float32) * np.maximum(means, 0.05)
    shape = (n_slices, rows, cols)
    texture = _smooth_field(rng, shape, (0.3, 2.0 / px, 2.0 / px))
    marrow_tex = _smooth_field(rng, shape, (0.5, rng.uniform(1.5, 5.0) / px, rng.uniform(1.5, 5.0) / px))
    marrow_amp = float(rng.uniform(0.0, 0.3))
    img = np.zeros(shape, dtype=np.float32)
    labels = None
    offsets = (-thickness / 3, 0.0, thickness / 3)
    for off in offsets:
        p = base + (step * off).astype(np.float32)
        q = p - warp(p)
        tissue, spider = anat.tissue(q, want_labels=off == 0.0, bodies_only=True)
        _darken_collapsed(anat, q, tissue, variants["collapsed_discs"])
        sub = means[tissue] + stds[tissue] * texture
        marrow = tissue == MARROW
        sub[marrow] *= 1 + marrow_amp * marrow_tex[marrow]
        img += sub / len(offsets)
        if spider is not None:
            labels = base_labels_from_spider(spider)
    assert labels is not None
    img = _marrow_lesions(rng, img, labels, means, px)
    img = _acquisition(rng, img, px)
    meta = {
        "seed": int(seed),
        "contrast": mode,
        "thickness_mm": round(thickness, 2),
        "gap_mm": round(gap, 2),
        "pixel_mm": round(px, 3),
        "slices": n_slices,
        "fov_top_s_mm": round(s_top, 1),
        "fov_bottom_s_mm": round(s_bottom, 1),
        **variants,
        **warp.describe(),
    }
    return RandomisedCase(image=img, labels=labels, affine=affine, meta=meta)


def _darken_collapsed(anat: Anatomy, q: np.ndarray, tissue: np.ndarray, collapsed: list[str]) -> None:
    """A collapsed disc has lost its nucleus signal: its nucleus is drawn as annulus."""
    if not collapsed:
        return
    nuc = tissue == NUCLEUS
    if not nuc.any():
        return
    s, _, _ = anat.frame_coords(q[nuc])
    centres = np.array([anat.disc_centre_s(lv) for lv in LEVELS], dtype=np.float32)
    nearest = np.abs(s[:, None] - centres[None, :]).argmin(axis=1)
    dark = np.isin(nearest, [LEVELS.index(lv) for lv in collapsed])
    sub = tissue[nuc]
    sub[dark] = ANNULUS
    tissue[nuc] = sub


def _marrow_lesions(
    rng: np.random.Generator, img: np.ndarray, labels: np.ndarray, means: np.ndarray, px: float
) -> np.ndarray:
    """Fat spots (haemangioma-like blobs) in the bodies, and Modic-like bands along some endplates."""
    body = labels == BASE_LABELS["vertebra"]
    if not body.any():
        return img
    if rng.random() < 0.4:
        blobs = _smooth_field(rng, img.shape, (0.5, 3.0 / px, 3.0 / px)) > rng.uniform(1.6, 2.4)
        img = np.where(body & blobs, means[FAT] * rng.uniform(0.7, 1.1), img)
    if rng.random() < 0.35:
        disc = labels == BASE_LABELS["disc"]
        if disc.any():
            # in-plane distance to the nearest disc, slice by slice (the slices are 3-6 mm apart)
            dist = np.stack([ndimage.distance_transform_edt(~d) for d in disc]) * px
            band = body & (dist < rng.uniform(3, 9))
            rows = np.nonzero(band.any(axis=(0, 2)))[0]
            if rows.size:  # one endplate region (a 40 mm window of rows), darker or brighter
                lo = int(rng.choice(rows))
                window = np.zeros(img.shape[1], dtype=bool)
                window[max(0, lo - int(20 / px)) : lo + int(20 / px)] = True
                band &= window[None, :, None]
                img = np.where(band, img * rng.uniform(0.4, 1.8), img)
    return img


def _acquisition(rng: np.random.Generator, img: np.ndarray, px: float) -> np.ndarray:
    """Resolution loss, bias field, gamma, correlated Rician noise; scaled to 0–1000."""
    blur = float(rng.uniform(0.0, 1.2))
    if blur > 0.05:
        img = ndimage.gaussian_filter(img, sigma=(0, blur, blur), mode="nearest")
    bias = np.exp(rng.uniform(0.0, 0.5) * _smooth_field(rng, img.shape, (1.0, 60.0 / px, 60.0 / px)))
    img = img * bias.astype(np.float32)
    top = float(np.percentile(img, 99.5)) or 1.0
    img = np.clip(img / top, 0, 1.5)
    img = img ** np.float32(np.exp(rng.normal(0, 0.25)))
    sigma = float(rng.uniform(0.005, 0.07))
    corr = float(rng.uniform(0.0, 1.0))
    noise = []
    for _ in range(2):
        n = rng.standard_normal(img.shape).astype(np.float32)
        if corr > 0.1:
            n = ndimage.gaussian_filter(n, sigma=(0, corr, corr))
            n /= max(float(n.std()), 1e-6)
        noise.append(n * sigma)
    img = np.sqrt((img + noise[0]) ** 2 + noise[1] ** 2)
    return (img * 1000.0).astype(np.float32)
