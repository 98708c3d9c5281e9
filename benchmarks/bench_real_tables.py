"""The Markdown tables ``bench_real_landmarks.py`` prints and writes to ``results.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bench_seg_common import fmt, md_table

#: Confidence from which a level counts as confidently named (the calibration column).
CONFIDENT = 0.8


def _stats(xs: Sequence[float]) -> dict[str, float | None]:
    if not xs:
        return {"median": None, "p90": None, "max": None}
    return {
        "median": round(float(np.median(xs)), 2),
        "p90": round(float(np.percentile(xs, 90)), 2),
        "max": round(float(np.max(xs)), 2),
    }


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One dataset's totals over its volumes."""
    lvls = [v for r in records for v in r["levels"].values()]
    errs = [v["error_mm"] for v in lvls if v["error_mm"] is not None]
    preds = [p for r in records for p in r["predicted"]]
    conf = [p for p in preds if p["confidence"] >= CONFIDENT]
    dices = [r["body_dice"] for r in records if r.get("body_dice") is not None]
    out = {
        "volumes": len(records),
        "levels": len(lvls),
        "found": sum(v["found"] for v in lvls),
        "named_right": sum(v["named_right"] for v in lvls),
        **{f"error_{k}_mm": v for k, v in _stats(errs).items()},
        "body_dice_mean": round(float(np.mean(dices)), 4) if dices else None,
        "seg_seconds_mean": round(float(np.mean([r["seg_seconds"] for r in records])), 2) if records else None,
        "landmark_seconds_mean": round(float(np.mean([r["landmark_seconds"] for r in records])), 2)
        if records
        else None,
        "confident_levels": len(conf),
        "confident_named_right": sum(p["right"] for p in conf),
    }
    l5 = [r["levels"]["l5_s1"] for r in records if "l5_s1" in r["levels"]]
    if l5:
        out["l5_s1"] = {
            "levels": len(l5),
            "found": sum(v["found"] for v in l5),
            "named_right": sum(v["named_right"] for v in l5),
        }
    dice_parts = [r["dice"] for r in records if r.get("dice")]
    if dice_parts:
        out["dice_mean"] = {
            k: round(float(np.mean([d[k] for d in dice_parts if d[k] is not None])), 4) for k in dice_parts[0]
        }
    counts = [r["disc_count"] for r in records if r.get("disc_count")]
    if counts:
        out["disc_count"] = {
            "series": len(counts),
            "exact": sum(c["predicted"] == c["overview"] for c in counts),
            "mean_abs_difference": round(float(np.mean([abs(c["predicted"] - c["overview"]) for c in counts])), 3),
        }
    canal = [v["error_mm"] for r in records for v in r.get("canal", {}).values() if v["error_mm"] is not None]
    if canal:
        out["canal_error"] = _stats(canal)
    foramina = [f["error_mm"] for r in records for f in r.get("foramina", []) if f["error_mm"] is not None]
    if foramina:
        fs = [f for r in records for f in r.get("foramina", [])]
        out["foramen_error"] = _stats(foramina)
        out["foramen_same_slice"] = sum(f["instance"] == f["annotated_instance"] for f in fs)
        out["foramen_within_one_slice"] = sum(
            f["instance"] is not None and abs(f["instance"] - f["annotated_instance"]) <= 1 for f in fs
        )
        out["foramina"] = len(fs)
    return out


# ---------------------------------------------------------------------------------------------------------
# report


def _frac(a: int, b: int) -> str:
    return f"{a}/{b}" if b else "—"


def tables(doc: dict[str, Any]) -> str:
    parts = []
    rows = []
    for name, s in doc["datasets"].items():
        rows.append(
            [
                name,
                s["volumes"],
                _frac(s["found"], s["levels"]),
                _frac(s["named_right"], s["levels"]),
                s["error_median_mm"],
                s["error_p90_mm"],
                s["error_max_mm"],
                s["body_dice_mean"],
                _frac(s["confident_named_right"], s["confident_levels"]),
                s["seg_seconds_mean"],
                s["landmark_seconds_mean"],
            ]
        )
    parts.append(
        md_table(
            [
                "dataset",
                "volumes",
                "found",
                "named right",
                "error median mm",
                "p90 mm",
                "max mm",
                "body Dice",
                f"conf ≥ {CONFIDENT}: named right",
                "seg s/vol",
                "landmarks s/vol",
            ],
            rows,
            digits=2,
        )
    )
    rows = []
    for r in doc["volumes"]:
        s = r["summary"]
        rows.append(
            [
                r["case_id"],
                r["fold"],
                _frac(s["found"], s["total"]),
                _frac(s["named_right"], s["total"]),
                s["error_median_mm"],
                s["error_max_mm"],
                r.get("body_dice"),
                r.get("anchor"),
                r.get("unsure"),
                r["seg_seconds"],
                r["landmark_seconds"],
            ]
        )
    parts.append(
        md_table(
            [
                "volume",
                "fold",
                "found",
                "named right",
                "error median mm",
                "max mm",
                "body Dice",
                "anchor",
                "unsure",
                "seg s",
                "landmarks s",
            ],
            rows,
            digits=2,
        )
    )
    rsna = [r for r in doc["volumes"] if r["dataset"] == "rsna"]
    for r in rsna:
        rows = []
        foramina = {(f["level"], f["side"]): f for f in r.get("foramina", [])}
        for lv, v in r["levels"].items():
            lf, rf = foramina.get((lv, "left"), {}), foramina.get((lv, "right"), {})
            rows.append(
                [
                    lv,
                    v["found"],
                    v["named_right"],
                    v["error_mm"],
                    v["confidence"],
                    lf.get("error_mm"),
                    f"{fmt(lf.get('instance'))} ({fmt(lf.get('annotated_instance'))})",
                    rf.get("error_mm"),
                    f"{fmt(rf.get('instance'))} ({fmt(rf.get('annotated_instance'))})",
                ]
            )
        parts.append(
            f"RSNA {r['case_id']}:\n\n"
            + md_table(
                [
                    "level",
                    "found",
                    "named right",
                    "canal vs spinal keypoint mm",
                    "confidence",
                    "left foramen mm",
                    "left T1 slice (annotated)",
                    "right foramen mm",
                    "right T1 slice (annotated)",
                ],
                rows,
                digits=2,
            )
        )
    real = [r for r in doc["volumes"] if r["dataset"] != "synthetic"]
    if real:
        s = summarise(real)
        parts.append(
            f"all real volumes ({s['volumes']}; RSNA errors are canal points): "
            f"found {_frac(s['found'], s['levels'])}, named right "
            f"{_frac(s['named_right'], s['levels'])}, error median {fmt(s['error_median_mm'], 2)} mm, p90 "
            f"{fmt(s['error_p90_mm'], 2)}, max {fmt(s['error_max_mm'], 2)}; calibration: of "
            f"{s['confident_levels']} levels with confidence ≥ {CONFIDENT}, {s['confident_named_right']} named right"
        )
    fs = doc["datasets"].get("rsna", {})
    if "foramen_error" in fs:
        fe = fs["foramen_error"]
        parts.append(
            f"RSNA foramen points vs foraminal keypoints: median {fe['median']} mm, p90 {fe['p90']}, max "
            f"{fe['max']}; on the annotated T1 slice {fs['foramen_same_slice']}/{fs['foramina']}, within one "
            f"slice {fs['foramen_within_one_slice']}/{fs['foramina']}"
        )
    rows = [
        [name, _frac(s["l5_s1"]["found"], s["l5_s1"]["levels"]), _frac(s["l5_s1"]["named_right"], s["l5_s1"]["levels"])]
        for name, s in doc["datasets"].items()
        if "l5_s1" in s
    ]
    if rows:
        parts.append(
            "L5/S1 on its own (datasets whose truth has it):\n\n" + md_table(["dataset", "found", "named right"], rows)
        )
    for name, s in doc["datasets"].items():
        if "dice_mean" in s:
            d = s["dice_mean"]
            parts.append(
                f"{name}: Dice vertebra {fmt(d['vertebra'])} (the mask's whole vertebra against the model's body), "
                f"disc {fmt(d['disc'])}, canal {fmt(d['spinal_canal'])} (mean over {s['volumes']} slices)"
            )
        if "disc_count" in s:
            c = s["disc_count"]
            parts.append(
                f"{name}: disc count on the slice equal to overview.csv's num_discs in {_frac(c['exact'], c['series'])}"
                f" series (mean |difference| {c['mean_abs_difference']})"
            )
    syn = doc["datasets"].get("synthetic", {}).get("canal_error")
    if syn:
        parts.append(
            f"synthetic canal point vs canal_centre: median {syn['median']} mm, p90 {syn['p90']}, max {syn['max']}"
        )
    return "\n\n".join(parts)
