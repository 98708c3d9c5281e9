"""Plan, preprocess and train nnU-Net v2 in-process: no subprocesses, progress through a callback.

Why in-process: the trainer class runs in this Python (``plans["continue_training"] = False`` as nnU-Net's
own entry point does), which on a 2-core machine took 20 s where ``nnUNetv2_train`` took 47 s for the same
tiny run, and lets spineseg report each epoch's pseudo-Dice as it is logged.

Plans: ``budget="cpu"`` writes ``nnUNetPlans_CPUBudget`` (coarser in-plane spacing, half the feature maps,
small batches; see ``spine_seg_nnunet_tasks/trainers/spineseg_cpu_planner.py``), ``budget="default"``
nnU-Net's ``nnUNetPlans``. Both can live side by side; :func:`train` picks the one that matches the device
unless told. nnU-Net is imported only inside the functions, after :func:`nnunet_env.apply`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spine_seg.core.choices import Budget, Device, check_choice, values
from spine_seg.core.errors import UsageError
from spine_seg.segmentation import nnunet_env

log = logging.getLogger(__name__)

#: Configurations spineseg asks nnU-Net for (``3d_lowres`` exists only for large images).
CONFIGURATIONS: tuple[str, ...] = ("2d", "3d_fullres", "3d_lowres")
BUDGETS: tuple[str, ...] = values((Budget.CPU, Budget.DEFAULT))
DEVICES: tuple[str, ...] = values(Device)
DEFAULT_PLANS = "nnUNetPlans"
CPU_PLANS = "nnUNetPlans_CPUBudget"  # = spine_seg_nnunet_tasks.trainers.CPU_PLANS (checked by the tests)
#: Trainer used when none is named: nnU-Net's own on a GPU, the CPU budget one on a CPU.
DEFAULT_TRAINER = {"cuda": "nnUNetTrainer", "cpu": "nnUNetTrainer_CPUBudget"}
SPINESEG_TRAINERS: tuple[str, ...] = ("nnUNetTrainer_Smoke", "nnUNetTrainer_CPUBudget")
TRAIN_RECORD = "spineseg_train.json"


# ---------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset planned and preprocessed: which plans, which configurations, how long it took."""

    dataset_id: int
    dataset_name: str
    plans: str
    plans_file: Path
    configurations: tuple[str, ...]
    patch_size: dict[str, list[int]]
    batch_size: dict[str, int]
    spacing_mm: dict[str, list[float]]
    seconds: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plans_file"] = str(self.plans_file)
        return d


@dataclass(frozen=True)
class EpochReport:
    """One epoch as nnU-Net logged it; pseudo-Dice is computed on validation patches, per foreground label."""

    epoch: int  # 1-based
    num_epochs: int
    train_loss: float
    val_loss: float
    pseudo_dice: tuple[float, ...]
    mean_pseudo_dice: float
    ema_pseudo_dice: float
    seconds: float

    def line(self) -> str:
        return (
            f"epoch {self.epoch}/{self.num_epochs}  train loss {self.train_loss:.4f}  val loss {self.val_loss:.4f}"
            f"  pseudo-Dice {self.mean_pseudo_dice:.3f} (EMA {self.ema_pseudo_dice:.3f})  {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class TrainResult:
    """What a training produced: the result folder (give it to ``SegmentationModel.from_folder``) and metrics.

    ``final_dice`` is nnU-Net's final validation (whole validation cases, mean over foreground labels,
    leaving out labels absent from both reference and prediction, whose Dice is undefined); ``None`` when
    validation was skipped. ``dice_per_label`` maps label names to that validation's Dice (``None``: undefined).
    """

    result_folder: Path
    fold_folder: Path
    checkpoint: Path
    dataset_name: str
    trainer: str
    plans: str
    configuration: str
    fold: int | str
    device: str
    epochs: int
    seconds: float
    final_dice: float | None
    dice_per_label: dict[str, float | None]
    ema_pseudo_dice: float | None
    history: tuple[EpochReport, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("result_folder", "fold_folder", "checkpoint"):
            d[k] = str(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        """The inverse of :meth:`to_dict` (a fold trained in another process writes its record as JSON)."""
        d = dict(d)
        for k in ("result_folder", "fold_folder", "checkpoint"):
            d[k] = Path(d[k])
        d["history"] = tuple(EpochReport(**{**h, "pseudo_dice": tuple(h["pseudo_dice"])}) for h in d.get("history", ()))
        return cls(**d)


ProgressCallback = Callable[[EpochReport], None]


# ---------------------------------------------------------------------------------------------------------
# names and checks (no nnU-Net import needed)


def resolve_budget(budget: str = "auto") -> str:
    """The plans budget to prepare: ``cpu`` or ``default`` as given; ``auto`` → ``default`` with a GPU, else ``cpu``."""
    check_choice("budget", budget, values(Budget))
    if budget != Budget.AUTO:
        return budget
    import torch

    return "default" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str = "auto"):
    """``auto`` → CUDA when torch sees a GPU, else CPU. Asking for ``cuda`` without one is an error."""
    import torch

    check_choice("device", device, DEVICES)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device 'cuda' requested but torch {torch.__version__} sees no CUDA device "
            f"(built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto"
        )
    return torch.device(device)


def parse_fold(fold: int | str) -> int | str:
    """A fold is a non-negative integer (0–4 for nnU-Net's 5-fold split) or ``all`` (train on every case)."""
    if isinstance(fold, str):
        if fold == "all":
            return fold
        if not fold.strip().isdigit():
            raise UsageError(f"fold must be a non-negative integer or 'all', got {fold!r}")
        fold = int(fold)
    if fold < 0:
        raise UsageError(f"fold must be a non-negative integer or 'all', got {fold}")
    return fold


def dataset_folder_name(dataset_id: int, root: Path) -> str | None:
    """``DatasetNNN_Name`` for ``dataset_id`` under ``root``; ``None`` when absent; an error when ambiguous."""
    if not root.is_dir():
        return None
    names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and re.fullmatch(rf"Dataset{dataset_id:03d}_.+", p.name)
    )
    if len(names) > 1:
        raise UsageError(f"dataset id {dataset_id} is ambiguous in {root}: {names}")
    return names[0] if names else None


def dataset_id_of(folder: Path) -> int:
    m = re.fullmatch(r"Dataset(\d{3})_.+", Path(folder).name)
    if not m:
        raise UsageError(f"{folder}: not an nnU-Net dataset folder (DatasetNNN_Name)")
    return int(m.group(1))


def _require_dataset(dataset_id: int, env: nnunet_env.NnunetEnv, where: str) -> str:
    if not 0 < dataset_id < 1000:
        raise UsageError(f"dataset id must be 1–999, got {dataset_id}")
    root = env.raw if where == "raw" else env.preprocessed
    name = dataset_folder_name(dataset_id, root)
    if name is None:
        hint = "convert it first (spineseg prepare)" if where == "raw" else "run spineseg prepare first"
        var = nnunet_env.RAW_VAR if where == "raw" else nnunet_env.PREPROCESSED_VAR
        raise FileNotFoundError(f"no Dataset{dataset_id:03d}_* in {root} ({var}): {hint}")
    return name


@contextlib.contextmanager
def _nnunet_console(verbose: bool) -> Iterator[Any]:
    """nnU-Net prints a lot (it also writes its own log file). Hide it unless ``verbose``; yield the real stdout."""
    real = sys.stdout
    if verbose:
        yield real
        return
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield real


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------
# planning and preprocessing


def plan_and_preprocess(
    dataset_id: int,
    configurations: Sequence[str] = ("2d",),
    budget: str = "cpu",
    *,
    num_processes: int | None = None,
    verify: bool = True,
    verbose: bool = False,
    inplane_spacing_mm: float | None = None,
    max_features: int | None = None,
) -> PreparedDataset:
    """nnU-Net fingerprint + planning + preprocessing of ``nnUNet_raw/DatasetNNN_*``, in-process.

    ``budget="cpu"`` plans ``nnUNetPlans_CPUBudget`` (``inplane_spacing_mm`` overrides its 1.5 mm, ``max_features``
    its cap on the feature maps of the deepest stages: a smaller, faster network), ``"default"``
    nnU-Net's ``nnUNetPlans``. ``num_processes`` defaults to ``nnUNet_def_n_proc`` as set by :mod:`nnunet_env`.

    Long on purpose: nnU-Net's fingerprint, plan and preprocess steps in the order it requires.
    """
    configurations = tuple(configurations)
    if not configurations:
        raise UsageError(f"no configuration given; valid: {', '.join(CONFIGURATIONS)}")
    for c in configurations:
        check_choice("configuration", c, CONFIGURATIONS)
    check_choice("budget", budget, BUDGETS)
    env = nnunet_env.apply()
    name = _require_dataset(dataset_id, env, "raw")
    n_proc = int(num_processes or env.n_proc)
    t0 = time.perf_counter()

    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, preprocess_dataset

    if budget == "cpu":
        from spine_seg_nnunet_tasks.trainers.spineseg_cpu_planner import ExperimentPlanner_CPUBudget

        planner_cls: type = ExperimentPlanner_CPUBudget
        plans_name = CPU_PLANS
    else:
        planner_cls, plans_name = ExperimentPlanner, DEFAULT_PLANS

    with _nnunet_console(verbose):
        extract_fingerprint_dataset(
            dataset_id,
            num_processes=n_proc,
            check_dataset_integrity=verify,
            clean=True,
            verbose=verbose,
            show_progress_bar=verbose,
        )
        planner = planner_cls(dataset_id, plans_name=plans_name)
        # nnunetv2 2.8.1's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for 0
        da_for_planning = {nnunet_env.N_PROC_DA_VAR: "1"} if os.environ.get(nnunet_env.N_PROC_DA_VAR) == "0" else {}
        if inplane_spacing_mm is not None:
            if budget != "cpu":
                raise UsageError("inplane_spacing_mm applies to budget='cpu' only")
            planner.inplane_spacing_mm = float(inplane_spacing_mm)
        if max_features is not None:
            if budget != "cpu":
                raise UsageError("max_features applies to budget='cpu' only")
            planner.UNet_max_features_2d = planner.UNet_max_features_3d = int(max_features)
        with _environ(da_for_planning):
            plans = planner.plan_experiment()
        missing = [c for c in configurations if c not in plans["configurations"]]
        if missing:
            raise UsageError(
                f"{name}: nnU-Net planned no {missing} for this data (2D images have no 3d configurations); "
                f"valid: {', '.join(c for c in CONFIGURATIONS if c in plans['configurations'])}"
            )
        preprocess_dataset(
            dataset_id, plans_name, configurations, num_processes=[n_proc], verbose=verbose, show_progress_bar=verbose
        )

    plans_file = env.preprocessed / name / f"{plans_name}.json"
    confs = plans["configurations"]
    result = PreparedDataset(
        dataset_id=dataset_id,
        dataset_name=name,
        plans=plans_name,
        plans_file=plans_file,
        configurations=configurations,
        patch_size={c: [int(v) for v in confs[c]["patch_size"]] for c in configurations},
        batch_size={c: int(confs[c]["batch_size"]) for c in configurations},
        spacing_mm={c: [round(float(v), 4) for v in confs[c]["spacing"]] for c in configurations},
        seconds=time.perf_counter() - t0,
    )
    log.info("planned and preprocessed %s with %s in %.1f s", name, plans_name, result.seconds)
    return result


# ---------------------------------------------------------------------------------------------------------
# training


def find_trainer_class(name: str) -> type:
    """A trainer class by name: spineseg's variants, nnU-Net's own (``nnUNetTrainer`` and its variants such as
    ``nnUNetTrainer_250epochs``), or a class in a folder of ``nnUNet_extTrainer``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise UsageError(f"unknown trainer {name!r}; valid: {', '.join(('nnUNetTrainer', *SPINESEG_TRAINERS))}")
    nnunet_env.apply(require=())
    if name in SPINESEG_TRAINERS:
        import spine_seg_nnunet_tasks.trainers as ours

        return getattr(ours, name)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, AssertionError):
        raise UsageError(
            f"unknown trainer {name!r}; valid: {', '.join(('nnUNetTrainer', *SPINESEG_TRAINERS))}, "
            f"nnU-Net's variants (e.g. nnUNetTrainer_250epochs) or a class in nnUNet_extTrainer"
        ) from None


def choose_plans(preprocessed_dataset: Path, device_type: str, plans: str | None = None) -> str:
    """The plans to train with: ``plans`` if given, else the CPU-budget plans on a CPU and nnU-Net's on a GPU,
    falling back to whichever exists."""
    available = sorted(p.stem for p in preprocessed_dataset.glob("*.json") if _is_plans_file(p))
    if plans is not None:
        if plans not in available:
            raise FileNotFoundError(
                f"no plans {plans!r} in {preprocessed_dataset}; available: {available or 'none (run spineseg prepare)'}"
            )
        return plans
    preferred = (CPU_PLANS, DEFAULT_PLANS) if device_type == "cpu" else (DEFAULT_PLANS, CPU_PLANS)
    for p in (*preferred, *available):
        if p in available:
            return p
    raise FileNotFoundError(f"no nnU-Net plans in {preprocessed_dataset}: run spineseg prepare first")


def _is_plans_file(path: Path) -> bool:
    if path.name in ("dataset.json", "dataset_fingerprint.json", "splits_final.json"):
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "configurations" in doc and "plans_name" in doc


def _epoch_report(trainer: Any, seconds: float) -> EpochReport:
    lg = trainer.logger

    def last(key: str) -> Any:
        values = lg.get_value(key, step=None)
        return values[-1] if len(values) else float("nan")

    dice = last("dice_per_class_or_region")
    return EpochReport(
        epoch=int(trainer.current_epoch),  # on_epoch_end has advanced it: 1-based now
        num_epochs=int(trainer.num_epochs),
        train_loss=float(last("train_losses")),
        val_loss=float(last("val_losses")),
        pseudo_dice=tuple(float(d) for d in (dice if isinstance(dice, list | tuple) else [])),
        mean_pseudo_dice=float(last("mean_fg_dice")),
        ema_pseudo_dice=float(last("ema_fg_dice")),
        seconds=seconds,
    )


def _hook_epochs(trainer: Any, history: list[EpochReport], progress: ProgressCallback | None, console: Any) -> None:
    """Wrap the instance's ``on_epoch_end`` so each epoch's losses and pseudo-Dice reach ``progress``."""
    original = trainer.on_epoch_end
    started: dict[str, float] = {}
    original_start = trainer.on_epoch_start

    def on_epoch_start() -> None:
        started["t"] = time.perf_counter()
        original_start()

    def on_epoch_end() -> None:
        original()
        report = _epoch_report(trainer, time.perf_counter() - started.get("t", time.perf_counter()))
        history.append(report)
        log.info("%s", report.line())
        if progress is not None:
            with contextlib.redirect_stdout(console):
                progress(report)

    trainer.on_epoch_start = on_epoch_start
    trainer.on_epoch_end = on_epoch_end


def train(
    dataset_id: int,
    configuration: str = "2d",
    fold: int | str = 0,
    trainer: str | None = None,
    device: str = "auto",
    epochs: int | None = None,
    progress: ProgressCallback | None = None,
    *,
    plans: str | None = None,
    validate: bool = True,
    validation_mirroring: bool | None = None,
    threads: int | None = None,
    verbose: bool = False,
    time_budget_s: float | None = None,
    init_weights: str | Path | None = None,
) -> TrainResult:
    """Train one nnU-Net fold in this process and return the result folder and final metrics.

    ``trainer``: a class name (default: ``nnUNetTrainer`` on CUDA, ``nnUNetTrainer_CPUBudget`` on CPU).
    ``epochs`` overrides the trainer's ``num_epochs`` on the instance (before the learning-rate schedule is
    built), for any trainer. ``progress`` receives an :class:`EpochReport` after every epoch. ``validate``
    runs nnU-Net's final validation on the fold's held-out cases (the Dice in the result), with test-time
    mirroring when ``validation_mirroring`` (default: on CUDA only, as :class:`SegmentationModel` predicts;
    mirroring is 4× the cost of a 2d prediction on a CPU). ``threads``: torch threads (default
    ``nnUNet_def_n_proc`` on a CPU, 1 on CUDA as nnU-Net does). nnU-Net's console
    output is hidden unless ``verbose``; it is always in the fold's ``training_log_*.txt``.

    ``time_budget_s``: a wall-clock budget for the training epochs (final validation not included). After the
    first epoch the number of epochs is cut to what fits at the measured pace and the poly learning-rate
    schedule is shortened to match, so the run still ends at a low learning rate; the plan is redone after
    every epoch at the pace of the epochs after the first (which carries the warm-up), down to keep to the
    budget or back up, never past ``epochs``. Benchmarks and the demo train "as well as N minutes allow".

    ``init_weights``: a warm start. The network starts from this checkpoint's ``network_weights`` (an nnU-Net
    checkpoint or an exported base-model fold, of the same plans), the optimizer and the learning-rate
    schedule from scratch: a model already trained learns new data in minutes instead of an hour.

    Long on purpose: nnU-Net's trainer is set up, run and read back in the order it requires.
    """
    check_choice("configuration", configuration, CONFIGURATIONS)
    fold = parse_fold(fold)
    if epochs is not None and epochs < 1:
        raise UsageError(f"epochs must be at least 1, got {epochs}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise UsageError(f"time_budget_s must be positive, got {time_budget_s}")
    dev = resolve_device(device)
    trainer_name = trainer or DEFAULT_TRAINER[dev.type]
    trainer_cls = find_trainer_class(trainer_name)
    env = nnunet_env.apply()
    name = _require_dataset(dataset_id, env, "preprocessed")
    pre = env.preprocessed / name
    plans_name = choose_plans(pre, dev.type, plans)
    plans_doc = json.loads((pre / f"{plans_name}.json").read_text(encoding="utf-8"))
    if configuration not in plans_doc["configurations"]:
        raise UsageError(
            f"configuration {configuration!r} is not in the plans {plans_name} of {name}; "
            f"valid: {', '.join(plans_doc['configurations'])}"
        )
    data_id = plans_doc["configurations"][configuration].get("data_identifier", f"{plans_name}_{configuration}")
    if not (pre / data_id).is_dir():
        raise FileNotFoundError(
            f"{pre / data_id} missing: preprocess {configuration} first (spineseg prepare --config {configuration})"
        )
    dataset_json = json.loads((pre / "dataset.json").read_text(encoding="utf-8"))

    import torch
    from torch.backends import cudnn

    plans_doc["continue_training"] = False  # what nnU-Net's run_training does; the trainer pops it
    # nnUNetv2_train gives a CPU run every core; spineseg uses nnUNet_def_n_proc (cpus // 2): on a shared
    # 2-core machine 2 threads made epochs 9× slower whenever another process kept a core busy.
    threads = int(threads or (env.n_proc if dev.type == "cpu" else 1))
    if dev.type == "cuda":
        cudnn.deterministic, cudnn.benchmark = False, True
    history: list[EpochReport] = []
    t0 = time.perf_counter()
    with _torch_threads(threads), _nnunet_console(verbose) as console:
        if (
            time_budget_s is not None
        ):  # the budget is a trainer variant: spine_seg_nnunet_tasks.trainers.spineseg_budget
            from spine_seg_nnunet_tasks.trainers.spineseg_budget import with_time_budget

            trainer_cls = with_time_budget(trainer_cls)
        tr = trainer_cls(plans=plans_doc, configuration=configuration, fold=fold, dataset_json=dataset_json, device=dev)
        if epochs is not None:
            tr.num_epochs = int(epochs)
        if time_budget_s is not None:
            tr.time_budget_s = float(time_budget_s)
        _hook_epochs(tr, history, progress, console)
        if init_weights is not None:
            tr.initialize()  # run_training skips its own initialize once this has run
            from spine_seg.segmentation.weights import load_network_weights

            load_network_weights(tr.network, init_weights)
        tr.run_training()
        if validate:
            _validate(tr, dev.type, validation_mirroring)
    seconds = time.perf_counter() - t0

    fold_folder = Path(tr.output_folder)
    final_dice, per_label = _read_validation(fold_folder, dataset_json) if validate else (None, {})
    result = TrainResult(
        result_folder=Path(tr.output_folder_base),
        fold_folder=fold_folder,
        checkpoint=fold_folder / "checkpoint_final.pth",
        dataset_name=name,
        trainer=trainer_name,
        plans=plans_name,
        configuration=configuration,
        fold=fold,
        device=str(dev),
        epochs=int(tr.num_epochs),
        seconds=round(seconds, 2),
        final_dice=final_dice,
        dice_per_label=per_label,
        ema_pseudo_dice=history[-1].ema_pseudo_dice if history else None,
        history=tuple(history),
    )
    (fold_folder / TRAIN_RECORD).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    del tr
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _validate(tr: Any, device_type: str, mirroring: bool | None) -> None:
    """nnU-Net's final validation; its predictor always mirrors, so switch mirroring off through the axes it
    reads (the checkpoint, already written, keeps them for GPU prediction)."""
    mirroring = device_type == "cuda" if mirroring is None else mirroring
    axes = tr.inference_allowed_mirroring_axes
    if not mirroring:
        tr.inference_allowed_mirroring_axes = None
    try:
        tr.perform_actual_validation(False)
    finally:
        tr.inference_allowed_mirroring_axes = axes


def _read_validation(fold_folder: Path, dataset_json: dict) -> tuple[float | None, dict[str, float | None]]:
    summary = fold_folder / "validation" / "summary.json"
    if not summary.is_file():
        return None, {}
    doc = json.loads(summary.read_text(encoding="utf-8"))
    names = {str(v): k for k, v in dataset_json.get("labels", {}).items() if isinstance(v, int)}
    per_label = {names.get(str(k), str(k)): _num(m.get("Dice")) for k, m in doc.get("mean", {}).items()}
    overall = _num(doc.get("foreground_mean", {}).get("Dice"))
    if overall is None:  # nnU-Net's mean is NaN when one label is absent from reference and prediction alike
        known = [v for v in per_label.values() if v is not None]
        overall = round(sum(known) / len(known), 4) if known else None
    return overall, per_label


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v != v else round(v, 4)
