"""nnU-Net trainer variants of spineseg; each changes one thing, named ``nnUNetTrainer_<WhatChanged>``.

nnU-Net imports this file as the top-level module ``spineseg_trainers`` when it searches ``nnUNet_extTrainer``
(training from its own CLI, and every prediction: a checkpoint names its trainer), so imports stay absolute.
The signature of ``__init__`` must stay nnU-Net's: the trainer saves its arguments by name in checkpoints.
"""

from __future__ import annotations

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

try:  # imported by nnU-Net as a top-level module from nnUNet_extTrainer, or as part of the package
    from spineseg_budget import TimeBudgetMixin
except ImportError:
    from spine_seg_nnunet_tasks.trainers.spineseg_budget import TimeBudgetMixin

from spine_seg.core.errors import UsageError

EPOCHS_VAR = "SPINESEG_EPOCHS"


class nnUNetTrainer_Smoke(nnUNetTrainer):
    """Changes the training length to a pipeline check: 2 epochs × 2 iterations, 1 validation iteration.

    Seconds on a CPU with the CPU-budget plans; the model learns next to nothing. Use it to prove that a
    dataset, its plans and the prediction path work end to end.
    """

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainer_CPUBudget(nnUNetTrainer):
    """Changes the training length to what a CPU can afford: 50 iterations per epoch (nnU-Net: 250),
    10 validation iterations (nnU-Net: 50) and 100 epochs (nnU-Net: 1000).

    ``SPINESEG_EPOCHS`` sets the number of epochs when nnU-Net's own ``nnUNetv2_train`` runs this trainer;
    ``spineseg train-seg --epochs`` sets it on any trainer. Pair it with the ``nnUNetPlans_CPUBudget`` plans.
    """

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 50
        self.num_val_iterations_per_epoch = 10
        self.num_epochs = _epochs_from_env(100)


def _epochs_from_env(default: int) -> int:
    value = os.environ.get(EPOCHS_VAR, "").strip()
    if not value:
        return default
    try:
        epochs = int(value)
    except ValueError:
        raise UsageError(f"{EPOCHS_VAR} must be a positive integer, got {value!r}") from None
    if epochs < 1:
        raise UsageError(f"{EPOCHS_VAR} must be a positive integer, got {value!r}")
    return epochs


class nnUNetTrainer_TimeBudget(TimeBudgetMixin, nnUNetTrainer):
    """Changes the number of epochs to what fits in ``$SPINESEG_TIME_BUDGET_MIN`` minutes of training
    (re-planned after every epoch, never past nnU-Net's 1000; see ``spineseg_budget``). For nnU-Net's CLI:
    ``SPINESEG_TIME_BUDGET_MIN=30 nnUNetv2_train 510 2d 0 -tr nnUNetTrainer_TimeBudget``.
    """
