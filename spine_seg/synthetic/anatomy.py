"""An analytic lumbar spine phantom: tissue classes and SPIDER labels at any patient-space point.

The spine is built in its own curvilinear frame — ``s`` along the spine (mm, superior positive, 0 at the
centre of L3), ``v`` anterior–posterior (mm, anterior positive, 0 on the vertebral-body axis) and ``w``
lateral (mm, patient's left positive) — so every structure is a simple shape there. The axis is a circular
arc (the lordosis) whose centre lies behind the spine; the sacrum leaves the arc at the S1 endplate with an
extra backward kink. A rigid transform places the whole phantom in LPS patient space (position in the
scanner, tilt). Everything is vectorised numpy over arrays of points, so a slice stack costs a few array
passes.

Pathology is geometry: canal stenosis narrows the thecal sac at the disc, foraminal narrowing shrinks the
fat-filled foramen around the exiting root, subarticular stenosis grows hypertrophic tissue into the
lateral recess. Each is scaled by a per-level ``narrowing`` in [0, 1] drawn from the level's severity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import (
    SPIDER_CANAL,
    SPIDER_PARTIAL_OFFSET,
    SPIDER_VERTEBRA_NUMBER,
    SYNTHETIC_SACRUM,
    VERTEBRAE,
    spider_disc_label,
)

# Tissue classes rendered by spine_seg.synthetic.render.
AIR, SOFT, FAT, MARROW, CORTEX, ANNULUS, NUCLEUS, CSF, NERVE, LIGAMENT, VESSEL, VISCERA = range(12)
TISSUE_NAMES = (
    "air",
    "soft",
    "fat",
    "marrow",
    "cortex",
    "annulus",
    "nucleus",
    "csf",
    "nerve",
    "ligament",
    "vessel",
    "viscera",
)

#: How far each severity narrows its structure: (low, high) fraction, drawn uniformly per level.
NARROWING_RANGE: dict[str, tuple[float, float]] = {
    "normal_mild": (0.0, 0.22),
    "moderate": (0.38, 0.55),
    "severe": (0.68, 0.85),
}


@dataclass(frozen=True)
class Anatomy:
    """Per-study anatomy. Arrays are indexed by VERTEBRAE (T11 … L5, S) or by LEVELS where noted."""

    rotation: np.ndarray  # 3×3, anatomy (w, -v-ish axes) → LPS; columns are the frame axes in LPS
    origin_lps_mm: np.ndarray  # LPS position of the frame origin (L3 body centre)
    radius_mm: float  # lordosis arc radius
    sacral_kink_rad: float
    body_height_mm: np.ndarray  # per vertebra (T11..L5), sacrum excluded
    disc_height_mm: np.ndarray  # per disc below T11..L5 (t11_t12, t12_l1, l1_l2 … l5_s1)
    body_depth_mm: np.ndarray  # per vertebra incl. sacrum top
    body_width_mm: np.ndarray
    canal_ap_mm: float
    canal_width_mm: float
    trunk_ap_mm: float
    trunk_width_mm: float
    fat_mm: float
    back_mm: float
    spinal_narrowing: np.ndarray  # per LEVELS
    foraminal_narrowing: np.ndarray  # [side(left,right), LEVELS]
    subarticular_narrowing: np.ndarray  # [side(left,right), LEVELS]
    disc_degeneration: np.ndarray  # per LEVELS, 0..1: darkens the nucleus on T2
    texture_phase: np.ndarray = field(default_factory=lambda: np.zeros(6))
    #: Remnant discs between the fused sacral segments: (mm below the S1 endplate, thickness mm, tissue).
    #: On a young spine's T2 the S1/S2 remnant is a bright line that looks like a lumbar disc; a network that
    #: has only seen a solid sacrum calls S1 a vertebra and counts the levels one off. They stay "sacrum".
    sacral_remnants: tuple[tuple[float, float, int], ...] = ()
    #: How far below its endplate the sacrum keeps its full depth before tapering (mm): a real S1 body is
    #: about as deep as L5.
    sacral_taper_start_mm: float = 0.0

    # ---- frame -------------------------------------------------------------------------------------
    @property
    def boundaries_mm(self) -> np.ndarray:
        """s of the segment edges from the top of T11 down to the S1 endplate (descending).

        Segments alternate body, disc: T11, t11_t12, T12, t12_l1, L1, l1_l2, …, L5, l5_s1; then sacrum.
        """
        heights = np.empty(2 * len(self.body_height_mm))
        heights[0::2] = self.body_height_mm
        heights[1::2] = self.disc_height_mm
        edges = np.concatenate([[0.0], np.cumsum(heights)])
        # L3 body centre is s = 0: L3 is body index 4 (T11, T12, L1, L2, L3)
        l3_centre = edges[8] + self.body_height_mm[4] / 2
        return l3_centre - edges

    @property
    def s_sacrum_top(self) -> float:
        return float(self.boundaries_mm[-1])

    def body_range(self, vertebra: str) -> tuple[float, float]:
        """(s_low, s_high) of a vertebral body."""
        i = VERTEBRAE.index(vertebra)
        if vertebra == "S":
            return (self.s_sacrum_top - 30.0, self.s_sacrum_top)
        b = self.boundaries_mm
        return (float(b[2 * i + 1]), float(b[2 * i]))

    def disc_range(self, upper_vertebra: str) -> tuple[float, float]:
        i = VERTEBRAE.index(upper_vertebra)
        b = self.boundaries_mm
        return (float(b[2 * i + 2]), float(b[2 * i + 1]))

    def disc_centre_s(self, level: str) -> float:
        lo, hi = self.disc_range(("L1", "L2", "L3", "L4", "L5")[LEVELS.index(level)])
        return (lo + hi) / 2

    def _arc_point(self, s: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Frame coords (s, v, w) on the arc → anatomy Cartesian (x left, y posterior, z superior)."""
        r = self.radius_mm + v
        phi = s / self.radius_mm
        return np.stack([w, self.radius_mm - r * np.cos(phi), r * np.sin(phi)], axis=-1)

    def _sacral_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Endplate centre E, inferior unit vector and anterior unit vector of the sacrum (anatomy coords)."""
        s0 = self.s_sacrum_top
        e = self._arc_point(np.array(s0), np.array(0.0), np.array(0.0))
        phi = s0 / self.radius_mm
        down = np.array([0.0, -np.sin(phi), -np.cos(phi)])  # -d/ds
        ant = np.array([0.0, -np.cos(phi), np.sin(phi)])  # d/dv
        k = self.sacral_kink_rad  # rotate both about x so the sacrum tips backwards
        c, sn = np.cos(k), np.sin(k)
        rot = np.array([[1, 0, 0], [0, c, sn], [0, -sn, c]])
        return e, rot @ down, rot @ ant

    def to_world(self, s: float, v: float, w: float) -> np.ndarray:
        """One frame point → LPS mm (the inverse of :meth:`frame_coords`)."""
        if s >= self.s_sacrum_top:
            p = self._arc_point(np.array(s), np.array(v), np.array(w))
        else:
            e, down, ant = self._sacral_frame()
            p = e + (self.s_sacrum_top - s) * down + v * ant + np.array([w, 0.0, 0.0])
        return self.origin_lps_mm + self.rotation @ p

    def frame_coords(self, xyz_lps_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS points (..., 3) → frame coordinates (s, v, w), float32 arrays of the same leading shape."""
        p = (np.asarray(xyz_lps_mm, dtype=np.float32) - self.origin_lps_mm.astype(np.float32)) @ self.rotation.astype(
            np.float32
        )
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        rc = np.float32(self.radius_mm)
        dy = y - rc
        r = np.sqrt(dy * dy + z * z)
        s = rc * np.arctan2(z, -dy)
        v = r - rc
        w = x
        e, down, ant = (a.astype(np.float32) for a in self._sacral_frame())
        along = (y - e[1]) * down[1] + (z - e[2]) * down[2]
        sac = along > 0
        if np.any(sac):
            across = (y - e[1]) * ant[1] + (z - e[2]) * ant[2]
            s = np.where(sac, np.float32(self.s_sacrum_top) - along, s)
            v = np.where(sac, across, v)
        return s, v, w

    # ---- landmarks ---------------------------------------------------------------------------------
    def canal_centre_v(self, level_index: int | None = None) -> float:
        depth = (
            float(np.mean(self.body_depth_mm[2:7]))
            if level_index is None
            else float(self.body_depth_mm[level_index + 2])
        )
        return -0.85 * depth / 2 - 1.5 - self.canal_ap_mm / 2

    def landmarks(self) -> dict[str, dict[str, list[float]]]:
        """World (LPS mm) landmarks per level: disc centre, spinal keypoint, canal, foramina, recesses."""
        out: dict[str, dict[str, list[float]]] = {}
        for i, level in enumerate(LEVELS):
            s = self.disc_centre_s(level)
            depth = float(self.body_depth_mm[i + 2])
            vc = self.canal_centre_v(i)
            wc = self.canal_width_mm / 2
            sf = self.foramen_centre_s(i)
            pts = {
                "disc_centre": (s, 0.0, 0.0),
                "spinal_keypoint": (s, -0.25 * depth, 0.0),
                "canal_centre": (s, vc, 0.0),
                "left_foramen": (sf, self.foramen_v(i), wc + 6.5),
                "right_foramen": (sf, self.foramen_v(i), -(wc + 6.5)),
                "left_subarticular": (s, vc - 0.15 * self.canal_ap_mm, wc - 3.0),
                "right_subarticular": (s, vc - 0.15 * self.canal_ap_mm, -(wc - 3.0)),
            }
            out[level] = {k: [round(float(c), 3) for c in self.to_world(*p)] for k, p in pts.items()}
        return out

    def vertebra_centres(self) -> dict[str, list[float]]:
        out = {}
        for name in VERTEBRAE:
            lo, hi = self.body_range(name)
            out[name] = [round(float(c), 3) for c in self.to_world((lo + hi) / 2, 0.0, 0.0)]
        return out

    def foramen_centre_s(self, level_index: int) -> float:
        lo, hi = self.disc_range(("L1", "L2", "L3", "L4", "L5")[level_index])
        return hi + 3.0  # the foramen sits at the disc and the lower part of the vertebra above

    def foramen_v(self, level_index: int) -> float:
        return -0.85 * float(self.body_depth_mm[level_index + 2]) / 2 - 4.5

    # ---- tissue ------------------------------------------------------------------------------------
    def tissue(
        self, xyz_lps_mm: np.ndarray, want_labels: bool = True, bodies_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Tissue class (uint8) and SPIDER label (uint16, or None) at each point.

        ``bodies_only``: vertebra labels on the vertebral bodies alone (pedicles, laminae and spinous
        processes unlabelled), as the real bodies-only masks (VB2, MyoSegmenTUM) draw them.
        """
        s, v, w = self.frame_coords(xyz_lps_mm)
        shape = s.shape
        tis = np.full(shape, AIR, dtype=np.uint8)
        lab = np.zeros(shape, dtype=np.uint16) if want_labels else None
        aw = np.abs(w)

        # trunk: ellipse in (v, w) centred in front of the spine, with a subcutaneous fat rim
        # the back's skin lies `back_mm` behind the vertebral-body axis; the trunk extends forward from there
        tv = (v - np.float32(self.trunk_ap_mm / 2 - self.back_mm)) / np.float32(self.trunk_ap_mm / 2)
        tw = w / np.float32(self.trunk_width_mm / 2)
        q = tv * tv + tw * tw
        inner = (1 - self.fat_mm / (self.trunk_ap_mm / 2)) ** 2
        tis[q <= 1] = FAT
        tis[q <= inner] = SOFT
        cand = np.nonzero(((q <= inner) & (v > np.float32(np.max(self.body_depth_mm) / 2 + 12))).ravel())[0]
        if cand.size:
            tex = self._texture(s.ravel()[cand], v.ravel()[cand], w.ravel()[cand])
            tis.ravel()[cand[tex > 0.15]] = VISCERA

        # the spine itself occupies a slab around the frame axis: paint it on those points only
        b0 = float(self.boundaries_mm[0])
        near = (aw < 75) & (v > -120) & (v < 80) & (s > np.float32(self.s_sacrum_top - 130)) & (s < np.float32(b0 + 40))
        idx = np.nonzero(near.ravel())[0]
        if idx.size:
            sub_t = tis.ravel()[idx]
            sub_l = np.zeros(idx.size, dtype=np.uint16) if lab is not None else None
            self._paint_spine(s.ravel()[idx], v.ravel()[idx], w.ravel()[idx], sub_t, sub_l, bodies_only)
            tis.ravel()[idx] = sub_t
            if lab is not None:
                lab.ravel()[idx] = sub_l
        return tis, lab

    def _paint_spine(
        self,
        s: np.ndarray,
        v: np.ndarray,
        w: np.ndarray,
        tis: np.ndarray,
        lab: np.ndarray | None,
        bodies_only: bool = False,
    ) -> None:
        """Paint canal, vertebrae, discs and posterior elements onto 1-D point arrays, in place.

        Each structure is evaluated only on the band of points that can hold it (gathered by index), which
        keeps the cost per study well under a second; later structures overwrite earlier ones.

        Long on purpose: one pass painting every structure on one grid, in the order they overlap.
        """
        aw = np.abs(w)
        b = self.boundaries_mm.astype(np.float32)
        nseg = len(b)
        seg = np.clip(np.searchsorted(-b, -s), 0, nseg)  # 0 above T11; odd: bodies; even: discs; nseg: sacrum
        below = seg == nseg
        in_body = (seg % 2 == 1) & ~below
        in_disc = (seg % 2 == 0) & (seg > 0) & ~below
        vert_index = np.where(below, len(VERTEBRAE) - 1, np.clip((seg - 1) // 2, 0, len(VERTEBRAE) - 2))
        # body depth and width vary smoothly along s (interpolated between body centres)
        centres = -np.array([sum(self.body_range(n)) / 2 for n in VERTEBRAE], dtype=np.float32)
        a = np.interp(-s, centres, self.body_depth_mm / 2).astype(np.float32)
        bw = np.interp(-s, centres, self.body_width_mm / 2).astype(np.float32)
        ca = np.float32(self.canal_ap_mm / 2)
        cw = np.float32(self.canal_width_mm / 2)
        vc = -0.85 * a - 1.5 - ca
        in_spine = s > np.float32(self.s_sacrum_top - 95)
        numbers = np.array([SPIDER_VERTEBRA_NUMBER.get(n, SYNTHETIC_SACRUM) for n in VERTEBRAE], dtype=np.uint16)
        disc_numbers = np.array([spider_disc_label(n) for n in VERTEBRAE[:-1]] + [0], dtype=np.uint16)

        # --- canal: bony canal with epidural fat, thecal sac with CSF, stenosis at the discs -----------------
        ci = np.nonzero(in_spine & (aw < cw + 4) & (v > vc - ca - 4) & (v < vc + ca + 4))[0]
        cs, cv_, cw_, cvc = s[ci], v[ci], w[ci], vc[ci]
        disc_s = np.array([self.disc_centre_s(lv) for lv in LEVELS], dtype=np.float32)
        disc_sigma = np.array([0.6 * self.disc_height_mm[i + 2] + 3.0 for i in range(len(LEVELS))], dtype=np.float32)
        nearest = np.abs(cs[:, None] - disc_s[None, :]).argmin(axis=1)
        g = np.exp(-(((cs - disc_s[nearest]) / disc_sigma[nearest]) ** 2))
        n = self.spinal_narrowing.astype(np.float32)[nearest] * g
        bony = (((cv_ - cvc) / (ca + 3)) ** 2 + (cw_ / (cw + 3)) ** 2) <= 1
        tis[ci[bony]] = FAT
        if lab is not None:
            lab[ci[bony]] = SPIDER_CANAL
        sac_a, sac_w, sac_vc = ca * (1 - 0.95 * n), cw * (1 - 0.3 * n), cvc + 0.25 * ca * n
        thecal = (((cv_ - sac_vc) / sac_a) ** 2 + (cw_ / sac_w) ** 2) <= 1
        narrowed = ((((cv_ - cvc) / ca) ** 2 + (cw_ / cw) ** 2) <= 1) & ~thecal
        tis[ci[narrowed & (cv_ > cvc)]] = ANNULUS
        tis[ci[narrowed & (cv_ <= cvc)]] = LIGAMENT
        tis[ci[thecal]] = CSF
        # lateral recesses: hypertrophic facet / ligamentum flavum grows in from behind and outside
        for side, table in ((1, self.subarticular_narrowing[0]), (-1, self.subarticular_narrowing[1])):
            nar = table.astype(np.float32)[nearest] * g
            r = nar * cw * 0.95
            blob = ((cv_ - (cvc - 0.55 * ca)) ** 2 + (cw_ - side * cw * 1.05) ** 2) <= r * r
            tis[ci[blob]] = LIGAMENT
            root = thecal & (
                ((cv_ - (cvc - 0.15 * ca)) ** 2 + (cw_ - side * (cw - 3.0)) ** 2) <= (1.6 * (1 - 0.5 * nar)) ** 2
            )
            tis[ci[root]] = NERVE
        # cauda equina below the conus, the cord above it
        conus = np.float32(self.disc_range("L1")[0] + 2)
        ti = np.nonzero(thecal)[0]
        ts, tv_, tw_ = cs[ti], cv_[ti], cw_[ti]
        tsvc, tsa, tsw = sac_vc[ti], sac_a[ti], sac_w[ti]
        cauda = ts < conus
        for dv, dw in ((-0.45, -0.25), (-0.45, 0.25), (-0.2, -0.45), (-0.2, 0.45), (-0.6, 0.0)):
            tis[ci[ti[cauda & (((tv_ - (tsvc + dv * tsa)) ** 2 + (tw_ - dw * tsw) ** 2) <= 1.1)]]] = NERVE
        cord_r = np.clip((ts - conus) / 10.0, 0, 1) * 4.5
        tis[ci[ti[(ts >= conus) & (((tv_ - cvc[ti]) ** 2 / 1.2 + tw_ * tw_) <= cord_r * cord_r)]]] = NERVE

        # --- vertebral bodies, discs and sacrum --------------------------------------------------------------
        vi = np.nonzero((v > -a * 0.9) & (v < a * 1.1) & (aw < bw * 1.3))[0]
        vs, vv, vw, va, vb = s[vi], v[vi], w[vi], a[vi], bw[vi]
        vseg, vown = seg[vi], vert_index[vi]
        qv = vv / va
        qb = qv * qv + (vw / vb) ** 2
        hi_edge = b[np.clip(vseg - 1, 0, nseg - 1)]
        lo_edge = b[np.clip(vseg, 0, nseg - 1)]
        body = in_body[vi] & (qb <= 1) & (qv >= -0.85)
        rim = body & (
            (qb > (1 - 2.0 / va) ** 2) | (vs - lo_edge < 1.2) | (hi_edge - vs < 1.2) | (qv < -0.85 + 2.0 / va)
        )
        tis[vi[body]] = MARROW
        tis[vi[rim]] = CORTEX
        disc_pos = np.clip((vs - lo_edge) / np.maximum(hi_edge - lo_edge, 1e-3), 0, 1)  # 0 bottom … 1 top
        bulge = 1.0 + 0.06 * np.sin(np.pi * disc_pos)
        qd = (vv / (va * bulge)) ** 2 + (vw / (vb * bulge)) ** 2
        disc = in_disc[vi] & (qd <= 1) & (vv >= -0.85 * va * bulge)
        tis[vi[disc]] = ANNULUS
        nuc = (
            disc
            & ((((vv + 0.1 * va) / (0.55 * va)) ** 2 + (vw / (0.55 * vb)) ** 2) <= 1)
            & (np.abs(disc_pos - 0.5) < 0.32)
        )
        tis[vi[nuc]] = NUCLEUS
        along = np.float32(self.s_sacrum_top) - vs
        taper = np.clip(1 - np.maximum(along - np.float32(self.sacral_taper_start_mm), 0) / 110.0, 0.25, 1)
        sa = va * taper
        sq = (vv / sa) ** 2 + (vw / (vb * 1.25 * taper)) ** 2
        sac = below[vi] & (along < 100) & (sq <= 1) & (vv >= -0.85 * sa)
        tis[vi[sac]] = MARROW
        tis[vi[sac & ((sq > (1 - 2.0 / sa) ** 2) | (along < 1.2))]] = CORTEX
        for depth, thick, remnant_tissue in self.sacral_remnants:
            off = np.abs(along - np.float32(depth))
            tis[vi[sac & (np.abs(off - np.float32(thick / 2)) < 1.0)]] = CORTEX  # the fused segments' endplates
            tis[vi[sac & (off < np.float32(thick / 2)) & (sq <= 0.8)]] = remnant_tissue
        if lab is not None:
            lab[vi[body]] = numbers[vown[body]]
            lab[vi[disc]] = disc_numbers[vown[disc]]
            lab[vi[sac]] = SYNTHETIC_SACRUM

        # --- pedicles and articular pillars lateral to the canal, foramina between them ------------------------
        li = np.nonzero(in_spine & ~below & (aw > cw + 1) & (aw < cw + 13) & (v < -0.85 * a + 1) & (v > vc - ca - 4))[0]
        tis[li] = MARROW
        if lab is not None and not bodies_only:
            own = in_body[li]
            lab[li[own]] = numbers[vert_index[li[own]]]
        ls_, lv_, lw_ = s[li], v[li], w[li]
        for i in range(len(LEVELS)):
            sf = np.float32(self.foramen_centre_s(i))
            fv = np.float32(self.foramen_v(i))
            for side_i, side in enumerate((1, -1)):
                nar = float(self.foraminal_narrowing[side_i, i])
                hf, af = 9.0 * (1 - 0.55 * nar), 4.8 * (1 - 0.6 * nar)
                fo = (side * lw_ > 0) & ((((ls_ - sf) / 9.0) ** 2 + ((lv_ - fv) / 4.8) ** 2) <= 1)
                if not fo.any():
                    continue
                tis[li[fo]] = LIGAMENT
                tis[li[fo & ((((ls_ - sf) / hf) ** 2 + ((lv_ - fv) / af) ** 2) <= 1)]] = FAT
                rr = 2.3 * (1 - 0.35 * nar)
                tis[li[fo & (((ls_ - (sf + 0.35 * hf)) ** 2 + (lv_ - fv) ** 2) <= rr * rr)]] = NERVE
                if lab is not None:
                    lab[li[fo]] = 0

        # --- laminae and spinous processes behind the canal, ligamentum flavum between laminae -------------------
        lam_v0 = vc - ca - 3
        pi = np.nonzero(in_spine & ~below & (v < lam_v0) & (v > lam_v0 - 30) & (aw < cw + 9))[0]
        pv, pw, pl = v[pi], np.abs(w[pi]), lam_v0[pi]
        lamina = pv > pl - 7
        # spinous processes: shorter than the body, sloping down behind it, narrowing towards the tip
        ps = s[pi] - np.float32(0.0)
        centre = np.array([sum(self.body_range(nm)) / 2 for nm in VERTEBRAE], dtype=np.float32)[vert_index[pi]] - 5.0
        depth_back = (pl - 7) - pv  # mm behind the lamina
        spinous = (
            ~lamina & (np.abs(ps - centre + 0.25 * depth_back) < 8.0 - 0.12 * depth_back) & (pw < 3.5) & ~below[pi]
        )
        tis[pi[lamina & in_disc[pi]]] = LIGAMENT
        tis[pi[lamina & in_body[pi]]] = MARROW
        tis[pi[spinous]] = MARROW
        if lab is not None and not bodies_only:
            bone = (lamina & in_body[pi]) | spinous
            lab[pi[bone]] = numbers[vert_index[pi[bone]]]

        # --- muscles outlined by fat planes: psoas beside the bodies, paraspinal muscles behind the laminae ---
        mi = np.nonzero((aw > bw * 0.6) & (aw < bw + 45) & (v > lam_v0 - 70) & (v < a * 1.2) & in_spine)[0]
        ms, mv, mw, ma, mbw, ml = s[mi], v[mi], np.abs(w[mi]), a[mi], bw[mi], lam_v0[mi]
        grow = np.clip((np.float32(self.body_range("L1")[1]) - ms) / 60.0, 0, 1)  # psoas thickens caudally
        pr = 4 + 14 * grow
        qp = ((mv - 0.1 * ma) / (pr * 1.2 + 1e-3)) ** 2 + ((mw - (mbw + pr)) / (pr + 1e-3)) ** 2
        tis[mi[(qp > 1) & (qp < 1.25) & (grow > 0.05)]] = FAT
        qe = ((mv - (ml - 32)) / 26.0) ** 2 + ((mw - 24) / 20.0) ** 2  # erector spinae, one per side
        tis[mi[(qe > 1) & (qe < 1.12)]] = FAT

        # --- aorta in front of the left of the upper bodies, iliac arteries below L4 ----------------------------
        l4c = sum(self.body_range("L4")) / 2
        xi = np.nonzero((v > a + 2) & (v < a + 26) & (aw < 60))[0]
        xs, xv, xw = s[xi], v[xi] - (a[xi] + 14), w[xi]
        vessel = (xs > l4c) & ((xv**2 + (xw - 14) ** 2) <= 100)
        for side in (1, -1):
            vessel |= (xs <= l4c) & (xs > l4c - 60) & ((xv**2 + (xw - side * (22 + 0.3 * (l4c - xs))) ** 2) <= 40)
        tis[xi[vessel]] = VESSEL

    def _texture(self, s: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        p = self.texture_phase
        return (
            np.sin(s * 0.11 + p[0]) * np.sin(v * 0.13 + p[1]) + np.sin(w * 0.09 + p[2]) * np.sin((s + v) * 0.07 + p[3])
        ) * 0.5


def mark_partial(label: np.ndarray) -> np.ndarray:
    """SPIDER marks vertebrae cut by the field of view as 100 + number; do it for those touching an edge."""
    out = label.copy()
    for number in SPIDER_VERTEBRA_NUMBER.values():
        mask = label == number
        if not mask.any():
            continue
        edge = mask[:, 0, :].any() or mask[:, -1, :].any() or mask[:, :, 0].any() or mask[:, :, -1].any()
        if edge:
            out[mask] = SPIDER_PARTIAL_OFFSET + number
    return out
