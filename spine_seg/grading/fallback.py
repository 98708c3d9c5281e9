"""The Axial T2 fallback: subarticular grades from axial slices, without axial landmarks.

When the axial recess landmarks of a level are missing or unsure, the crop model has nothing to look at.
The fallback needs only the LEVEL: a world point in the canal at the disc (from the sagittal landmarks;
at training time the sagittal spinal keypoint). It takes the Axial T2 slice nearest that point (and its
neighbours; none farther than 10 mm) and resamples it on a square grid of ``fov_mm`` either around the
point projected onto the slice (``centre="point"``, default: 80 mm, both recesses and the canal) or around
the IMAGE centre (``centre="image"``, e.g. 160 mm: the whole slice, no landmark at all). A small timm
backbone with one 6-logit head (left and right subarticular × 3 grades) grades both sides at once.

Training uses the competition's keypoints and grades (labels per level and side), with mirror augmentation
(flip left↔right and swap the two labels: on an axial image the patient's left is on the image's right).
Prediction averages the image and its mirror. Every prediction says it came from the fallback
(:data:`spine_seg.grading.ensemble.SOURCE_FALLBACK` in :meth:`Ensemble.predict_study`), and the checkpoint
says whether it beat the training prior on its validation studies (:attr:`AxialFallback.beats_prior`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spine_seg.core.constants import LEVELS, SEVERITIES, SeriesKind
from spine_seg.core.errors import UsageError
from spine_seg.dicom import Study, load_study
from spine_seg.grading import metric
from spine_seg.grading.crops import CropSpec, crop_stack, normalise, read_keypoints
from spine_seg.grading.dataset import SEVERITY_INDEX, assign_folds
from spine_seg.grading.ensemble import smoothed_prior, submission_from_rows
from spine_seg.grading.models import (
    GradingModel,
    amp_dtype,
    model_from_checkpoint,
    package_versions,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
)
from spine_seg.grading.train import (
    TrainConfig,
    augment_batch,
    label_maps,
    run_loop,
    seed_everything,
    weighted_cross_entropy,
)

log = logging.getLogger(__name__)

#: 80 mm around the level's midline point on the axial slice (``centre="point"``, the default); the
#: whole-slice variant is ``CropSpec(fov_mm=160, ...)`` with ``centre="image"`` (measured worse, docs/grading.md).
FALLBACK_SPEC = CropSpec(fov_mm=80.0, size_px=64, n_slices=3)
FALLBACK_CONDITIONS: tuple[str, str] = ("left_subarticular_stenosis", "right_subarticular_stenosis")
#: Where the fallback's square is centred: the image centre, or the level point (from the sagittal
#: landmarks) projected onto the axial slice.
CENTRES: tuple[str, ...] = ("image", "point")
#: A level whose nearest axial slice is farther than this from the level point has no axial image.
MAX_DISTANCE_MM = 10.0


@dataclass(frozen=True)
class AxialInput:
    """The fallback's input for one level and where it came from."""

    level: str
    pixels: np.ndarray  # float32 [n_slices, size, size]
    series_id: str
    instance_number: int
    distance_mm: float


def level_points_from_keypoints(study: Study, keypoints: pd.DataFrame) -> dict[str, np.ndarray]:
    """A world point per level from the study's keypoints: the spinal one (sagittal), else the mean of
    its subarticular ones. Stands in, at training time, for the sagittal landmarks used at inference."""
    rows = keypoints[keypoints.study_id == study.study_id]
    out: dict[str, np.ndarray] = {}
    for level in LEVELS:
        pts = []
        for preferred in (("spinal_canal_stenosis",), FALLBACK_CONDITIONS):
            for r in rows[(rows.level == level) & rows.condition.isin(preferred)].itertuples(index=False):
                try:
                    pts.append(
                        study.get_series(r.series_id).pixel_to_world(int(r.instance_number), float(r.x), float(r.y))
                    )
                except KeyError:
                    continue
            if pts:
                break
        if pts:
            out[level] = np.mean(pts, axis=0)
    return out


def axial_inputs(
    study: Study,
    level_points: Mapping[str, np.ndarray],
    spec: CropSpec = FALLBACK_SPEC,
    max_distance_mm: float = MAX_DISTANCE_MM,
    cache: dict | None = None,
    centre: str = "point",
) -> tuple[dict[str, AxialInput], list[str]]:
    """Per level: the nearest Axial T2 slice (+ neighbours) resampled around the image centre
    (``centre="image"``) or around the level point projected onto that slice (``"point"``: the midline
    from the sagittal landmarks); and notes for the levels without one (no Axial T2, or the nearest
    slice farther than ``max_distance_mm``)."""
    if centre not in CENTRES:
        raise UsageError(f"unknown centre {centre!r}; valid: {list(CENTRES)}")
    cache = {} if cache is None else cache
    series = study.series_of_kind(SeriesKind.AXIAL_T2)
    out: dict[str, AxialInput] = {}
    notes: list[str] = []
    if not series:
        return out, [f"no Axial T2 series: no fallback for {sorted(level_points)}"]
    for level, xyz in level_points.items():
        hits = [(s, s.locate(np.asarray(xyz, dtype=float))) for s in series]
        s, hit = min(hits, key=lambda sh: (not sh[1].inside_fov, abs(sh[1].distance_mm)))
        if abs(hit.distance_mm) > max_distance_mm:
            notes.append(
                f"{level}: nearest Axial T2 slice is {abs(hit.distance_mm):.1f} mm away (> {max_distance_mm:g} mm)"
            )
            continue
        stack = s.stacks[hit.stack_index]
        sl = stack.slices[hit.k]
        if centre == "image":
            xyz_centre = sl.pixel_to_world((sl.columns - 1) / 2.0, (sl.rows - 1) / 2.0)
        else:
            xyz_centre = sl.pixel_to_world(hit.x_px, hit.y_px)
        key = (s.series_id, stack.index)
        if key not in cache:
            cache[key] = normalise(stack.load())
        crop = crop_stack(cache[key], stack, xyz_centre, spec)
        out[level] = AxialInput(level, crop.pixels, s.series_id, hit.instance_number, float(hit.distance_mm))
    return out, notes


@dataclass
class FallbackTable:
    """One row per (study, level) with an axial image: ``study_id, level, label_left, label_right, crop``."""

    rows: pd.DataFrame
    labels: pd.DataFrame  # the metric's long labels (subarticular rows) of the studies in the table
    spec: CropSpec
    skipped: dict[str, str] = field(default_factory=dict)
    centre: str = "point"

    def stack(self, idx: Iterable[int] | None = None) -> np.ndarray:
        crops = self.rows["crop"].to_numpy()
        idx = np.arange(len(crops)) if idx is None else np.asarray(list(idx))
        return np.stack([crops[i] for i in idx]).astype(np.float32)


def build_fallback_table(
    data_dir: str | Path,
    spec: CropSpec = FALLBACK_SPEC,
    studies: Iterable[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    centre: str = "point",
) -> FallbackTable:
    """The fallback's training table from a competition-layout folder (failed studies skipped, reason kept)."""
    data_dir = Path(data_dir)
    train_csv = data_dir / "train.csv"
    df = metric.read_csv(train_csv)
    labels = metric.labels_from_train_csv(df, train_csv)
    labels = labels[labels.condition.isin(FALLBACK_CONDITIONS)].reset_index(drop=True)
    grade = {r: SEVERITY_INDEX[s] for r, s in zip(labels.row_id, labels.severity, strict=True)}
    keypoints = read_keypoints(data_dir / "train_label_coordinates.csv")
    listed = data_dir / "train_series_descriptions.csv"
    series_csv: Path | None = listed if listed.is_file() else None
    wanted = [str(s) for s in (df["study_id"] if studies is None else studies)]
    records, skipped, done = [], {}, []
    for i, sid in enumerate(wanted):
        try:
            study = load_study(data_dir / "train_images" / sid, series_csv)
            inputs, notes = axial_inputs(study, level_points_from_keypoints(study, keypoints), spec, centre=centre)
            if not inputs:
                raise UsageError("no level with an axial image" + (f" ({notes[0]})" if notes else ""))
        except Exception as exc:  # noqa: BLE001 - one bad study must not stop the table
            skipped[sid] = f"{type(exc).__name__}: {exc}"
            log.warning("fallback table: study %s skipped: %s", sid, skipped[sid])
        else:
            done.append(sid)
            for level, inp in inputs.items():
                left, right = (grade.get(f"{sid}_{c}_{level}", -1) for c in FALLBACK_CONDITIONS)
                records.append((sid, level, left, right, inp.pixels.astype(np.float16)))
        if progress is not None:
            progress(i + 1, len(wanted), sid)
    rows = pd.DataFrame.from_records(records, columns=["study_id", "level", "label_left", "label_right", "crop"])
    labels = labels[labels.study_id.isin(done)].reset_index(drop=True)
    return FallbackTable(rows, labels, spec, skipped, centre)


def _mirror(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-1,))


def fallback_rows(rows: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """[N, 2, 3] probabilities of table rows → submission-format rows (left and right per level)."""
    out = []
    for side, cond in enumerate(FALLBACK_CONDITIONS):
        f = pd.DataFrame(probs[:, side], columns=list(SEVERITIES))
        f.insert(0, "row_id", [f"{s}_{cond}_{lv}" for s, lv in zip(rows.study_id, rows.level, strict=True)])
        out.append(f)
    return pd.concat(out, ignore_index=True)


@torch.no_grad()
def predict_fallback(
    model: GradingModel, x: torch.Tensor | np.ndarray, device: torch.device, batch_size: int = 64, tta: bool = True
) -> np.ndarray:
    """[N, 2, 3] probabilities (left, right); with ``tta`` averaged with the mirrored image (sides swapped)."""
    model.eval()
    x = torch.as_tensor(x)
    out = np.zeros((len(x), 2, len(SEVERITIES)))
    amp = amp_dtype(device)
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].float().to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            p = model(xb)[:, 0].float().view(-1, 2, 3).softmax(-1)
            if tta:
                p = 0.5 * (p + model(_mirror(xb))[:, 0].float().view(-1, 2, 3).softmax(-1).flip(1))
        out[i : i + len(xb)] = p.cpu().numpy()
    return out


def train_fallback(
    table: FallbackTable,
    cfg: TrainConfig,
    out_dir: str | Path,
    val_fold: int = 0,
    echo: Callable[[str], None] | None = None,
) -> tuple[Path, dict]:
    """Train on every fold but ``val_fold`` (study-grouped folds of ``cfg.folds``), early-stop on the official
    metric of the held-out studies (subarticular rows from the fallback, the rest from the prior), save
    ``axial_fallback.pt``. Returns (checkpoint path, validation scores).

    Long on purpose: one training run (split, fit, validate, save) sharing the model's state.
    """
    from spine_seg.grading.train import _echo_default

    echo = echo or _echo_default
    cfg = replace(cfg, groups=("subarticular",))
    cfg.validate()
    device = resolve_device(cfg.device)
    out_dir = Path(out_dir)
    seed_everything(cfg.seed)
    studies = list(dict.fromkeys(table.rows.study_id))
    graded = table.rows[(table.rows.label_left >= 0) | (table.rows.label_right >= 0)]
    if graded.empty:
        raise UsageError("the fallback table has no graded subarticular level")
    folds = assign_folds(table.labels, cfg.folds, cfg.seed, studies=studies)
    val_studies = [s for s in studies if folds[s] == val_fold]
    tr = graded[~graded.study_id.isin(val_studies)].reset_index(drop=True)
    va = table.rows[table.rows.study_id.isin(val_studies)].reset_index(drop=True)
    va_labels = table.labels[table.labels.study_id.isin(val_studies)]
    prior = smoothed_prior(table.labels[~table.labels.study_id.isin(val_studies)])
    model = GradingModel(
        cfg.backbone, table.spec.n_slices, ("subarticular",), cfg.weights, cfg.drop_rate, n_outputs=6
    ).to(device)
    x_tr = torch.from_numpy(FallbackTable(tr, table.labels, table.spec).stack()) if len(tr) else torch.zeros(0)
    y_tr = torch.tensor(tr[["label_left", "label_right"]].to_numpy(), dtype=torch.long)
    x_va = torch.from_numpy(FallbackTable(va, table.labels, table.spec).stack()) if len(va) else torch.zeros(0)
    gen = torch.Generator().manual_seed(cfg.seed + 7)

    def step(idx: np.ndarray, augment: bool) -> torch.Tensor:
        x = x_tr[torch.as_tensor(idx)].to(device)
        y = y_tr[torch.as_tensor(idx)].to(device)
        if augment:
            flip = torch.rand(len(idx), generator=gen).to(device) < 0.5
            x = torch.where(flip[:, None, None, None], _mirror(x), x)
            y = torch.where(flip[:, None], y.flip(1), y)
            x = augment_batch(x, cfg, gen)
        logits = model(x)[:, 0].view(-1, 2, 3).reshape(-1, 3)
        y = y.reshape(-1)
        keep = y >= 0
        return weighted_cross_entropy(logits[keep], y[keep])

    def validate() -> tuple[float, dict]:
        if va_labels.empty:
            return 0.0, {}
        probs = predict_fallback(model, x_va, device, cfg.eval_batch_size)
        sub, source = submission_from_rows(val_studies, None, prior, fallback_rows(va, probs))
        sub_rows = sub.set_index("row_id").loc[va_labels.row_id].reset_index()
        nll = _weighted_nll(sub_rows, va_labels)  # the official metric's subarticular component
        return nll, {
            "subarticular": nll,
            "prior_rows": float((source.loc[va_labels.row_id] != "axial_fallback").mean()),
        }

    echo(
        f"axial fallback {cfg.backbone}: {len(tr)} train levels ({len(studies) - len(val_studies)} studies), "
        f"{len(va)} val levels ({len(val_studies)} studies), device {device}"
    )
    t0 = time.perf_counter()
    res = run_loop(model, len(tr), step, validate, cfg, device, f"axial fallback {cfg.backbone}", echo)
    model.load_state_dict(res.best_state)
    prior_sub, _ = submission_from_rows(val_studies, None, prior)
    prior_score = (
        _weighted_nll(prior_sub.set_index("row_id").loc[va_labels.row_id].reset_index(), va_labels)
        if len(va_labels)
        else float("nan")
    )
    val = {
        "subarticular": res.best_score,
        "epoch": res.best_epoch,
        "prior_subarticular": prior_score,
        "beats_prior": bool(res.best_score < prior_score),
    }
    meta = {
        "kind": "axial_fallback",
        "backbone": cfg.backbone,
        "in_chans": table.spec.n_slices,
        "groups": ["subarticular"],
        "n_outputs": 6,
        "outputs": [f"{c}:{s}" for c in FALLBACK_CONDITIONS for s in SEVERITIES],
        "config": asdict(cfg),
        "label_maps": label_maps(),
        "crop_specs": {"axial_fallback": asdict(table.spec)},
        "max_distance_mm": MAX_DISTANCE_MM,
        "centre": table.centre,
        "weight_source": asdict(model.weight_source),
        "versions": package_versions(),
        "val": val,
        "val_studies": val_studies,
        "seconds": time.perf_counter() - t0,
    }
    path = save_checkpoint(out_dir / "axial_fallback.pt", model, meta)
    (out_dir / "axial_fallback.json").write_text(
        json.dumps({k: v for k, v in meta.items() if k != "val_studies"}, indent=1)
    )
    echo(
        f"axial fallback: best epoch {res.best_epoch}, val subarticular {res.best_score:.4f} (prior {prior_score:.4f}"
        f"{'' if val['beats_prior'] else ': NOT better than the prior, do not use it'}) → {path}"
    )
    return path, val


def _weighted_nll(sub_rows: pd.DataFrame, labels: pd.DataFrame) -> float:
    """The metric's subarticular component: Σ w·(−ln p_true) / Σ w over these rows (w = 1/2/4)."""
    p = sub_rows[list(SEVERITIES)].to_numpy(dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    y = labels.severity.map(SEVERITY_INDEX).to_numpy()
    w = np.array([metric.SAMPLE_WEIGHTS[s] for s in SEVERITIES])[y]
    return float(np.sum(w * -np.log(np.clip(p[np.arange(len(y)), y], metric.EPS, 1.0))) / w.sum())


class AxialFallback:
    """A trained fallback: ``predict(study, level_points)`` → {(condition, level): probabilities}."""

    def __init__(self, path: str | Path, device: str | torch.device = "auto"):
        doc = read_checkpoint(path)
        if doc.get("kind") != "axial_fallback":
            raise UsageError(f"{path}: not an axial fallback checkpoint (kind {doc.get('kind')!r})")
        self.path = Path(path)
        self.meta = {k: v for k, v in doc.items() if k != "state_dict"}
        self.spec = CropSpec(**doc["crop_specs"]["axial_fallback"])
        self.max_distance_mm = float(doc.get("max_distance_mm", MAX_DISTANCE_MM))
        self.centre = str(doc.get("centre", "point"))
        self.device = resolve_device(device)
        self.model = model_from_checkpoint(doc).to(self.device)

    @property
    def beats_prior(self) -> bool:
        """Whether it beat the training prior on its validation studies (else prefer the prior)."""
        return bool(self.meta.get("val", {}).get("beats_prior", False))

    def predict(
        self, study: Study, level_points: Mapping[str, np.ndarray]
    ) -> tuple[dict[tuple[str, str], np.ndarray], list[str]]:
        """Probabilities for the left/right subarticular rows of each level with an axial image, and notes
        for the levels without one."""
        inputs, notes = axial_inputs(study, level_points, self.spec, self.max_distance_mm, centre=self.centre)
        if not inputs:
            return {}, notes
        levels = list(inputs)
        probs = predict_fallback(self.model, np.stack([inputs[lv].pixels for lv in levels]), self.device)
        out = {(c, lv): probs[i, side] for i, lv in enumerate(levels) for side, c in enumerate(FALLBACK_CONDITIONS)}
        return out, notes


__all__ = [
    "CENTRES",
    "FALLBACK_CONDITIONS",
    "FALLBACK_SPEC",
    "MAX_DISTANCE_MM",
    "AxialFallback",
    "AxialInput",
    "FallbackTable",
    "axial_inputs",
    "build_fallback_table",
    "fallback_rows",
    "level_points_from_keypoints",
    "predict_fallback",
    "train_fallback",
]
