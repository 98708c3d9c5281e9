"""Segmentation benchmark on real MRI: nnU-Net 2d on MyoSegmenTUM L1–L5 vertebral bodies, CPU, time-boxed.

What it does (issue #4, benchmark 1), all through spineseg's own APIs:

1. converts MyoSegmenTUM (``NN.mat``; ``CONVERTERS["myosegmentum"]``): 01–15 → imagesTr/labelsTr,
   16–20 → imagesTs/labelsTs; 19.mat is byte-identical to 18.mat and is dropped by the converter, so the
   test set is 16, 17, 18, 20 (four volumes; the report lists what was dropped and why);
2. plans and preprocesses the 2d configuration with the CPU-budget plans (``nnUNetPlans_CPUBudget``);
3. trains ``nnUNetTrainer_CPUBudget`` (50 iterations per epoch) on every training volume (fold ``all``),
   with ``epochs`` a large upper bound (1000) and a wall-clock budget (``--budget-min``, default 45) that
   decides how many epochs run: after each epoch ``train(time_budget_s=…)`` cuts the number of epochs to what
   fits and shortens the poly learning-rate schedule to match. nnU-Net's final validation is skipped (with
   fold ``all`` it would score the training volumes);
4. predicts each test volume (imagesTs read with SimpleITK, ``SegmentationModel.predict_array`` on the CPU,
   no mirroring, ``nnUNet_def_n_proc`` torch threads) and compares it with labelsTs.

Reported per test volume and as means:

- Dice of each vertebral body L1–L5 (2|P∩G| / (|P|+|G|) on the label's voxels; undefined when both are empty),
  their mean, and the Dice of "any vertebral body" (labels 1–5 merged: finds the bones, whatever their names);
- the **L1–L5 order rate**: the fraction of test volumes whose prediction is *in order*. A prediction is in
  order when each of L1, L2, L3, L4, L5 is present, and the centroids of their largest connected components
  (26-connectivity), taken in patient space (LPS mm from the image's affine), are strictly ordered along the
  cranio-caudal axis: z(L1) > z(L2) > z(L3) > z(L4) > z(L5) (LPS +z points to the head). The same check on the
  reference labels is reported beside it (it must be 100 %);
- training: epochs done, mean seconds per epoch, training seconds; inference seconds per volume.

Run (``--budget-min 1`` is a quick end-to-end check)::

    source .venv/bin/activate
    python benchmarks/bench_seg_myosegmentum.py [--budget-min 45] [--home /tmp/bench_seg_home] \\
        [--out /tmp/bench_seg_myosegmentum.json] [--data ../shared/data/myosegmentum]
    python benchmarks/bench_seg_myosegmentum.py --eval-only     # score the model already trained in --home

The markdown tables go to stdout, the results (with every epoch's losses) to ``--out`` as JSON. Everything
nnU-Net writes stays under ``--home`` (a SPINESEG_HOME under /tmp; never inside the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the training uses one core; keep numpy/scipy on it too

import numpy as np  # noqa: E402
from bench_seg_common import (  # noqa: E402
    dice,
    log,
    machine,
    md_table,
    refuse_repo_path,
    train_budgeted,
    use_home,
    write_json,
)
from scipy import ndimage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data")) / "myosegmentum"
DATASET_ID = 503
VERTEBRAE = ("L1", "L2", "L3", "L4", "L5")


def cranio_caudal_order(labels: np.ndarray, affine: np.ndarray, values: dict[str, int]) -> dict:
    """Centroid z (LPS, + = superior) of each label's largest 26-connected component; ``ordered`` as defined above."""
    z: dict[str, float | None] = {}
    for name, v in values.items():
        mask = labels == v
        if not mask.any():
            z[name] = None
            continue
        cc, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(cc.ravel())[1:]
        kk, jj, ii = np.nonzero(cc == int(np.argmax(sizes)) + 1)
        ijk1 = np.array([ii.mean(), jj.mean(), kk.mean(), 1.0])
        z[name] = round(float((affine @ ijk1)[2]), 2)
    present = all(v is not None for v in z.values())
    zs = [z[n] for n in values]
    ordered = present and all(a > b for a, b in zip(zs, zs[1:], strict=False))
    return {"all_present": present, "ordered": bool(ordered), "centroid_z_lps_mm": z}


def convert(data: Path, env) -> dict:
    from spine_seg_nnunet_tasks.common import REPORT_NAME
    from spine_seg_nnunet_tasks.registry import CONVERTERS

    t0 = time.perf_counter()
    folder = CONVERTERS["myosegmentum"](data, env.raw, None, overwrite=True)
    report = json.loads((folder / REPORT_NAME).read_text(encoding="utf-8"))
    out = {
        "folder": str(folder),
        "seconds": round(time.perf_counter() - t0, 1),
        "train_cases": [c["case_id"] for c in report["cases"] if not c["test"]],
        "test_cases": [c["case_id"] for c in report["cases"] if c["test"]],
        "skipped": report["skipped"],
        "notes": report["notes"],
    }
    log(f"converted: {len(out['train_cases'])} train, {len(out['test_cases'])} test in {out['seconds']} s")
    for s in out["skipped"]:
        log(f"  skipped {Path(s['item']).name}: {s['reason']}")
    return out


def evaluate(model, raw_folder: Path) -> dict:
    import SimpleITK as sitk

    from spine_seg.core.geometry import affine_from_sitk
    from spine_seg.core.labels import SEG_LABELS

    values = {n: SEG_LABELS[n] for n in VERTEBRAE}
    per_case = []
    for img_path in sorted((raw_folder / "imagesTs").glob("*_0000.nii.gz")):
        case = img_path.name[: -len("_0000.nii.gz")]
        image = sitk.ReadImage(str(img_path))
        volume = sitk.GetArrayFromImage(image).astype(np.float32)  # [k, j, i]
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(raw_folder / "labelsTs" / f"{case}.nii.gz")))
        affine = affine_from_sitk(image)
        t0 = time.perf_counter()
        pred = model.predict_array(volume, image.GetSpacing())  # GetSpacing is (i, j, k)
        seconds = time.perf_counter() - t0
        d = {n: dice(pred == v, ref == v) for n, v in values.items()}
        known = [x for x in d.values() if x is not None]
        rec = {
            "case": case,
            "shape_kji": list(volume.shape),
            "dice": {n: None if x is None else round(x, 4) for n, x in d.items()},
            "mean_dice": round(float(np.mean(known)), 4) if known else None,
            "any_vertebra_dice": round(
                dice(np.isin(pred, list(values.values())), np.isin(ref, list(values.values()))) or 0.0, 4
            ),
            "pred_order": cranio_caudal_order(pred, affine, values),
            "ref_order": cranio_caudal_order(ref, affine, values),
            "pred_voxels": {n: int((pred == v).sum()) for n, v in values.items()},
            "ref_voxels": {n: int((ref == v).sum()) for n, v in values.items()},
            "inference_seconds": round(seconds, 2),
        }
        log(f"  {case}: mean Dice {rec['mean_dice']}, in order {rec['pred_order']['ordered']}, {seconds:.1f} s")
        per_case.append(rec)
    if not per_case:
        raise SystemExit(f"{raw_folder / 'imagesTs'}: no test images")
    n = len(per_case)
    mean_per_label = {}
    for name in VERTEBRAE:
        xs = [c["dice"][name] for c in per_case if c["dice"][name] is not None]
        mean_per_label[name] = round(float(np.mean(xs)), 4) if xs else None
    return {
        "per_case": per_case,
        "mean_dice_per_label": mean_per_label,
        "mean_dice": round(float(np.mean([c["mean_dice"] for c in per_case if c["mean_dice"] is not None])), 4),
        "mean_any_vertebra_dice": round(float(np.mean([c["any_vertebra_dice"] for c in per_case])), 4),
        "order_rate": sum(c["pred_order"]["ordered"] for c in per_case) / n,
        "order_in_order": sum(c["pred_order"]["ordered"] for c in per_case),
        "reference_order_rate": sum(c["ref_order"]["ordered"] for c in per_case) / n,
        "n_test": n,
        "inference_seconds_per_volume": round(float(np.mean([c["inference_seconds"] for c in per_case])), 2),
    }


def tables(doc: dict) -> str:
    ev, tr = doc["evaluation"], doc.get("training") or {}
    rows = []
    for c in ev["per_case"]:
        rows.append(
            [
                c["case"],
                *(c["dice"][n] for n in VERTEBRAE),
                c["mean_dice"],
                c["any_vertebra_dice"],
                c["pred_order"]["ordered"],
                c["inference_seconds"],
            ]
        )
    rows.append(
        [
            "**mean**",
            *(ev["mean_dice_per_label"][n] for n in VERTEBRAE),
            ev["mean_dice"],
            ev["mean_any_vertebra_dice"],
            f"{ev['order_in_order']}/{ev['n_test']}",
            ev["inference_seconds_per_volume"],
        ]
    )
    out = [md_table(["test volume", *VERTEBRAE, "mean L1–L5", "any vertebra", "L1–L5 in order", "inference s"], rows)]
    conv = doc.get("conversion") or {}
    summary = [
        ["test volumes", ev["n_test"]],
        [
            "dropped by the converter",
            "; ".join(f"{Path(s['item']).name}: {s['reason']}" for s in conv.get("skipped", [])) or "none",
        ],
        ["L1–L5 order rate (prediction)", f"{ev['order_rate']:.0%} ({ev['order_in_order']}/{ev['n_test']})"],
        ["L1–L5 order rate (reference labels)", f"{ev['reference_order_rate']:.0%}"],
        ["mean Dice L1–L5", ev["mean_dice"]],
    ]
    if tr:
        summary += [
            ["training cases (fold all)", len(conv.get("train_cases", [])) or None],
            ["time budget (min)", tr["budget_min"]],
            ["epochs done (× 50 iterations)", tr["epochs"]],
            ["seconds per epoch (mean)", tr["seconds_per_epoch"]],
            ["training seconds", tr["seconds"]],
            [
                "last epoch: train loss / pseudo-Dice (EMA)",
                f"{tr['last_train_loss']:.4f} / {tr['last_ema_pseudo_dice']:.3f}",
            ],
            ["patch / batch / spacing (mm)", f"{tr['patch_size']} / {tr['batch_size']} / {tr['spacing_mm']}"],
        ]
    summary.append(["inference seconds per volume (CPU, no mirroring)", ev["inference_seconds_per_volume"]])
    out.append(md_table(["", "value"], summary, digits=2))
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the NN.mat files (default: %(default)s)")
    ap.add_argument(
        "--home", type=Path, default=Path("/tmp/bench_seg_home"), help="SPINESEG_HOME for nnU-Net's folders"
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_seg_myosegmentum.json"), help="results JSON")
    ap.add_argument("--budget-min", type=float, default=45.0, help="wall-clock budget of the training epochs, minutes")
    ap.add_argument("--epochs", type=int, default=1000, help="upper bound on the epochs; the budget decides")
    ap.add_argument("--eval-only", action="store_true", help="skip conversion and training; score the model in --home")
    args = ap.parse_args()
    for path, what in ((args.home, "--home"), (args.out, "--out")):
        refuse_repo_path(path, what)

    env = use_home(args.home)  # before anything imports nnunetv2
    from spine_seg.segmentation.predict import NNUNET_AS_IS, SegmentationModel
    from spine_seg.segmentation.train import DEFAULT_TRAINER, plan_and_preprocess

    t_start = time.perf_counter()
    doc: dict = {
        "benchmark": "bench_seg_myosegmentum",
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    raw_folder = env.raw / "Dataset503_MyoSegmenTUM"
    if args.eval_only:
        result_folder = env.results / "Dataset503_MyoSegmenTUM" / f"{DEFAULT_TRAINER['cpu']}__nnUNetPlans_CPUBudget__2d"
        record = result_folder / "fold_all" / "spineseg_train.json"
        if record.is_file():
            prev = json.loads(record.read_text(encoding="utf-8"))
            doc["training_record"] = {k: prev[k] for k in ("epochs", "seconds", "trainer", "plans")}
    else:
        doc["conversion"] = convert(args.data, env)
        prepared = plan_and_preprocess(DATASET_ID, ("2d",), "cpu")
        doc["preprocessing"] = prepared.to_dict()
        log(
            f"planned + preprocessed in {prepared.seconds:.0f} s: patch {prepared.patch_size['2d']}, "
            f"batch {prepared.batch_size['2d']}, spacing {prepared.spacing_mm['2d']} mm"
        )

        result, doc["training"] = train_budgeted(DATASET_ID, prepared, env, args.budget_min, args.epochs)
        result_folder = result.result_folder

    model = SegmentationModel.from_folder(result_folder, fold="all", device="cpu", **NNUNET_AS_IS)  # as measured
    log(f"predicting the test volumes with {model!r}")
    doc["evaluation"] = evaluate(model, raw_folder)
    doc["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(args.out, doc)
    print()
    print(tables(doc))
    print(f"\nresults: {args.out}  (wall {doc['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
