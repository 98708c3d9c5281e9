"""spineseg's nnU-Net trainer variants and the CPU-budget planner.

nnU-Net finds the trainers through ``nnUNet_extTrainer``, which :mod:`spine_seg.segmentation.nnunet_env`
points at this folder: it imports each module here as a top-level module (``spineseg_trainers``), so those
modules use absolute imports only. Each trainer overrides one thing and says so in its name:

* ``nnUNetTrainer_Smoke``: 2 epochs × 2 iterations, 1 validation iteration (a pipeline check: seconds on CPU).
* ``nnUNetTrainer_CPUBudget``: 50 iterations and 10 validation iterations per epoch (nnU-Net: 250 and 50),
  100 epochs (``SPINESEG_EPOCHS`` changes the default; ``spineseg train-seg --epochs`` overrides any trainer).
* ``nnUNetTrainer_TimeBudget``: the epochs that fit in ``SPINESEG_TIME_BUDGET_MIN`` minutes, re-planned every
  epoch (module ``spineseg_budget``; ``spineseg train-seg --time-budget`` puts the same loop on any trainer).

The planner ``ExperimentPlanner_CPUBudget`` (module ``spineseg_cpu_planner``) writes the plans
``nnUNetPlans_CPUBudget``: coarser in-plane spacing, half the feature maps, small batches.

Importing the classes imports nnU-Net, so they load lazily: ``TRAINER_NAMES`` is available at once, and
``spine_seg_nnunet_tasks.trainers.nnUNetTrainer_Smoke`` imports nnU-Net (after setting its environment).
"""

from __future__ import annotations

import importlib

#: Trainer classes defined here (checked against the module by the tests).
TRAINER_NAMES: tuple[str, ...] = ("nnUNetTrainer_Smoke", "nnUNetTrainer_CPUBudget")
PLANNER_NAME = "ExperimentPlanner_CPUBudget"
CPU_PLANS = "nnUNetPlans_CPUBudget"
EPOCHS_VAR = "SPINESEG_EPOCHS"

#: The wall-clock budget as a trainer variant (``spineseg_budget`` holds the loop, the mixin and its arithmetic).
BUDGET_TRAINER_NAMES: tuple[str, ...] = ("nnUNetTrainer_TimeBudget",)
BUDGET_VAR = "SPINESEG_TIME_BUDGET_MIN"

_MODULE_OF = {
    **dict.fromkeys((*TRAINER_NAMES, *BUDGET_TRAINER_NAMES), "spineseg_trainers"),
    PLANNER_NAME: "spineseg_cpu_planner",
}

__all__ = [
    "BUDGET_TRAINER_NAMES",
    "BUDGET_VAR",
    "CPU_PLANS",
    "EPOCHS_VAR",
    "PLANNER_NAME",
    "TRAINER_NAMES",
    *_MODULE_OF,
]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from spine_seg.segmentation import nnunet_env

    nnunet_env.apply(require=())  # nnU-Net reads its variables at import: set them first
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
