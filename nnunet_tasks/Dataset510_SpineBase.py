"""Dataset510_SpineBase: the base segmentation model's training set — domain-randomised phantoms and real
volumes together, in the structure labels of :data:`spine_seg.labels.BASE_LABELS`.

* ``synth_NNNN``: :func:`spine_seg.synthetic.randomise.randomised_case` (SynthSeg-style random contrast,
  anatomy variants, oblique thick slices; seeds ``seed + n``);
* ``vb2_NN``: every VB2 volume (:mod:`.Dataset506_VB2`: sagittal T2 TSE, T11–L5 bodies);
* ``myo_NN``: every MyoSegmenTUM volume but the duplicate 19 (:mod:`.Dataset503_MyoSegmenTUM`: water/fat
  images, L1–L5 bodies).

Real masks label bodies only: discs are pseudo-labelled between facing endplates and what the mask does not
know (canal, sacrum, unlabelled levels) carries nnU-Net's ignore label (:func:`.common.bodies_to_base_labels`),
so the real images teach what vertebrae and discs look like without teaching "canal = background".

Splits (``splits_final.json``): ``n_folds`` folds over the real volumes (each dataset dealt round-robin
by file number); every fold trains on all synthetic cases but a few validation ones. ``real_folds.json``
maps each real case to the fold that holds it out, so a benchmark never scores a volume on a model that
trained on it. Fold ``all`` (nnU-Net's name) trains on everything: the shipped base model.

Files are written through SimpleITK where it is installed, else nibabel; ``dataset.json`` names nnU-Net's
``NibabelIO`` so the same folder trains anywhere (a GPU machine without SimpleITK included).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spine_seg.core.labels import BASE_IGNORE, BASE_LABELS

from .common import (
    ConversionReport,
    map_cases,
    prepare_dataset_folder,
    write_case_arrays,
    write_dataset_json,
)

log = logging.getLogger(__name__)

DATASET_ID = 510
DATASET_NAME = "SpineBase"
DEFAULT_SYNTHETIC = 60
DEFAULT_SEED = 510
REAL_FOLDS_NAME = "real_folds.json"
REAL_SOURCES = ("vb2", "myosegmentum")
#: Synthetic cases per fold that validate instead of train (nnU-Net's pseudo-Dice needs a few).
SYNTHETIC_VAL_PER_FOLD = 3
LABELS_WITH_IGNORE: dict[str, int] = {**BASE_LABELS, "ignore": BASE_IGNORE}


def _synthetic_case(args: tuple[Path, int, int]) -> dict:
    from spine_seg.synthetic.randomise import randomised_case

    out, n, seed = args
    case = randomised_case(seed + n)
    case_id = f"synth_{n:04d}"
    image = np.clip(np.rint(case.image), 0, 32767).astype(np.int16)
    write_case_arrays(out, case_id, image, case.labels, case.spacing_mm)
    return {"case_id": case_id, "source": "synthetic", **case.meta}


def _real_cases(
    out: Path, data_root: Path, sources: Sequence[str], rng: np.random.Generator, report: ConversionReport
) -> list[dict]:
    from . import Dataset503_MyoSegmenTUM as myo
    from . import Dataset506_VB2 as vb2

    cases: list[dict] = []
    if "vb2" in sources:
        folder = data_root / "vb2"
        for path in sorted(folder.glob("*.mat")):
            try:
                image, gt = vb2.load_vb2(path)
                bodies = vb2.ordered_bodies(gt)
            except ValueError as exc:
                report.skip(path, str(exc))
                continue
            t = int(rng.integers(3, 6))
            img, lab = vb2.base_case(image, gt, bodies, t, int(rng.integers(0, t)))
            case_id = f"vb2_{path.stem}"
            write_case_arrays(out, case_id, img, lab, (vb2.SPACING_MM, vb2.SPACING_MM, float(t)))
            cases.append({"case_id": case_id, "source": "vb2", "file": path.name, "thickness_mm": t})
    if "myosegmentum" in sources:
        folder = data_root / "myosegmentum"
        seen: set[str] = set()
        for path in sorted(folder.glob("*.mat")):
            try:
                image, gt = myo.load_mat(path)
            except ValueError as exc:
                report.skip(path, str(exc))
                continue
            key = hashlib.sha256(image.tobytes() + gt.tobytes()).hexdigest()  # as the 503 converter: whole content
            if key in seen:
                report.skip(path, "duplicate volume (MyoSegmenTUM 19 = 18)")
                continue
            seen.add(key)
            problems = myo.check_vertebra_order(gt)
            if problems:
                report.skip(path, "; ".join(problems))
                continue
            bodies = [(name, v) for v, name in myo.MYO_LABELS.items()]
            t = int(rng.integers(3, 6))
            img, lab = vb2.base_case(image, gt, bodies, t, int(rng.integers(0, t)))
            case_id = f"myo_{path.stem}"
            write_case_arrays(out, case_id, img, lab, (myo.DEFAULT_SPACING_MM, myo.DEFAULT_SPACING_MM, float(t)))
            cases.append({"case_id": case_id, "source": "myosegmentum", "file": path.name, "thickness_mm": t})
    return cases


def real_folds(case_ids: Sequence[str], n_folds: int) -> dict[str, int]:
    """Each real case's held-out fold: per source, round-robin over the sorted case ids."""
    folds: dict[str, int] = {}
    for prefix in ("vb2_", "myo_"):
        for n, c in enumerate(sorted(c for c in case_ids if c.startswith(prefix))):
            folds[c] = n % n_folds
    return folds


def write_base_splits(out: Path, n_folds: int) -> dict[str, int]:
    """splits_final.json and real_folds.json from the cases present in imagesTr."""
    ids = sorted(p.name[: -len("_0000.nii.gz")] for p in (out / "imagesTr").glob("*_0000.nii.gz"))
    real = [c for c in ids if not c.startswith("synth_")]
    synth = [c for c in ids if c.startswith("synth_")]
    folds = real_folds(real, n_folds)
    splits = []
    for f in range(n_folds):
        synth_val = synth[f * SYNTHETIC_VAL_PER_FOLD : (f + 1) * SYNTHETIC_VAL_PER_FOLD]
        val = sorted([c for c in real if folds[c] == f] + synth_val)
        splits.append({"train": sorted(c for c in ids if c not in val), "val": val})
    (out / "splits_final.json").write_text(json.dumps(splits, indent=1) + "\n")
    (out / REAL_FOLDS_NAME).write_text(json.dumps(folds, indent=1) + "\n")
    return folds


def convert_spine_base(
    data_root: str | Path | None,
    raw_root: str | Path,
    dataset_id: int | None = DATASET_ID,
    *,
    n_synthetic: int = DEFAULT_SYNTHETIC,
    real: Sequence[str] = REAL_SOURCES,
    seed: int = DEFAULT_SEED,
    n_folds: int = 2,
    workers: int = 1,
    overwrite: bool = False,
    add: bool = False,
) -> Path:
    """Write ``raw_root/Dataset510_SpineBase`` from the generator and the real volumes under ``data_root``
    (``vb2/``, ``myosegmentum/``: the layout of spineseg's shared data folder).

    ``add``: keep the cases already in the folder and add these (to build the synthetic half on another
    machine); dataset.json and the splits are rewritten from everything present.
    """
    unknown = sorted(set(real) - set(REAL_SOURCES))
    if unknown:
        raise ValueError(f"unknown real sources {unknown}; valid: {list(REAL_SOURCES)}")
    dataset_id = DATASET_ID if dataset_id is None else int(dataset_id)
    raw_root = Path(raw_root)
    folder = raw_root / f"Dataset{dataset_id:03d}_{DATASET_NAME}"
    if add and folder.is_dir():
        out = folder
    else:
        out = prepare_dataset_folder(raw_root, dataset_id, DATASET_NAME, overwrite=overwrite)
    report = ConversionReport(
        dataset=out.name,
        source=str(data_root),
        options={"n_synthetic": n_synthetic, "real": list(real), "seed": seed, "n_folds": n_folds},
    )
    if real:
        if data_root is None or not Path(data_root).is_dir():
            raise FileNotFoundError(
                f"{data_root}: no data folder with vb2/ and myosegmentum/ (pass real=() to train on synthetic only)"
            )
        report.cases.extend(_real_cases(out, Path(data_root), real, np.random.default_rng(seed), report))
    report.cases.extend(map_cases(_synthetic_case, [(out, n, seed) for n in range(n_synthetic)], workers))
    n_cases = len(list((out / "imagesTr").glob("*_0000.nii.gz")))
    write_dataset_json(
        out,
        channel_names={0: "MRI"},
        labels=LABELS_WITH_IGNORE,
        num_training=n_cases,
        dataset_name=DATASET_NAME,
        description="spineseg base: domain-randomised phantoms + VB2 + MyoSegmenTUM, structure labels "
        "(vertebral body, sacrum, disc, canal), ignore where a real mask is silent.",
        reference="spineseg; VB2 (Zukic et al. 2014); MyoSegmenTUM (Burian et al. 2019)",
        licence="derived: see each source's licence (docs/external-data.md)",
        overwrite_image_reader_writer="NibabelIO",
    )
    write_base_splits(out, n_folds)
    report.write(out)
    log.info("%s: %d cases", out.name, n_cases)
    return out
