"""PNG montage of a synthetic study: mid-sagittal T1 and T2 with keypoints, one axial slice per level."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spine_seg.core import geometry
from spine_seg.core.constants import LEVELS, SeriesKind


def _window(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [1, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def write_preview(path: Path, rec: dict) -> Path:
    """Draw what a radiologist would check first: the sagittal pair and the axial slice at each disc."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = rec["truth"]
    landmarks = truth["landmarks_lps_mm"]
    fig, axes = plt.subplots(2, 5, figsize=(15, 7.2), facecolor="black")
    for ax in axes.ravel():
        ax.axis("off")
    for col, (kind, key) in enumerate(
        ((SeriesKind.SAGITTAL_T1, "foramen"), (SeriesKind.SAGITTAL_T2, "spinal_keypoint"))
    ):
        ax = axes[0, col * 2 : col * 2 + 2]
        ax[0].set_position([0.01 + col * 0.33, 0.42, 0.31, 0.56])
        ax[1].set_visible(False)
        if kind.value not in rec["volumes"]:
            ax[0].set_title(f"{kind.value}: missing", color="white")
            continue
        pixels, affine, _ = rec["volumes"][kind.value]
        k = pixels.shape[0] // 2
        ax[0].imshow(_window(pixels[k]), cmap="gray")
        for lv in LEVELS:
            names = ["spinal_keypoint"] if key == "spinal_keypoint" else ["left_foramen", "right_foramen"]
            for name in names:
                i, j, kk = geometry.world_to_voxel(affine, landmarks[lv][name])
                style = "r+" if abs(kk - k) < 0.5 else "y."
                ax[0].plot(i, j, style, ms=10)
            i, j, _ = geometry.world_to_voxel(affine, landmarks[lv]["disc_centre"])
            ax[0].text(i + 25, j, lv.upper().replace("_", "/"), color="cyan", fontsize=8)
        sequence = (
            truth["series"][0]["sequence"]
            if col == 0
            else next(s["sequence"] for s in truth["series"] if s["kind"] == kind.value)
        )
        ax[0].set_title(f"{kind.value} ({sequence})", color="white", fontsize=10)
    ax_sev = axes[0, 4]
    ax_sev.set_position([0.68, 0.42, 0.31, 0.56])
    lines = [f"study {truth['study_id']}  ({truth['split']}, axial {truth['axial_mode']})", ""]
    for lv in LEVELS:
        sev = truth["severity_true"]
        short = {"normal_mild": "N", "moderate": "M", "severe": "S"}
        lines.append(
            f"{lv.upper().replace('_', '/')}: canal {short[sev['spinal_canal_stenosis_' + lv]]}  "
            f"foramen L{short[sev['left_neural_foraminal_narrowing_' + lv]]} "
            f"R{short[sev['right_neural_foraminal_narrowing_' + lv]]}  "
            f"recess L{short[sev['left_subarticular_stenosis_' + lv]]} "
            f"R{short[sev['right_subarticular_stenosis_' + lv]]}"
        )
    ax_sev.text(0, 0.95, "\n".join(lines), color="white", fontsize=9, family="monospace", va="top")
    for col, lv in enumerate(LEVELS):
        ax = axes[1, col]
        ax.set_position([0.005 + col * 0.199, 0.01, 0.19, 0.38])
        best = None
        for pixels, affine, _first in rec["axial"]:
            i, j, k = geometry.world_to_voxel(affine, landmarks[lv]["canal_centre"])
            kk = int(np.clip(np.rint(k), 0, pixels.shape[0] - 1))
            if best is None or abs(k - kk) < best[0]:
                best = (abs(k - kk), pixels, affine, kk)
        if best is None or best[0] > 2:
            ax.set_title(f"{lv.upper()}: no axial", color="white", fontsize=9)
            continue
        _, pixels, affine, kk = best
        ax.imshow(_window(pixels[kk]), cmap="gray")
        for side in ("left", "right"):
            i, j, _ = geometry.world_to_voxel(affine, landmarks[lv][f"{side}_subarticular"])
            ax.plot(i, j, "r+", ms=9)
        ax.set_title(f"{lv.upper().replace('_', '/')} axial", color="white", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, facecolor="black", metadata={"Software": None})
    plt.close(fig)
    return path
