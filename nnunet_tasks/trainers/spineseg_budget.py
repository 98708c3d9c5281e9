"""A wall-clock budget for nnU-Net training, as a trainer variant: "train as well as N minutes allow".

nnU-Net's ``run_training`` fixes ``range(current_epoch, num_epochs)`` before the first epoch, so a budget
cannot be kept from a hook. :class:`TimeBudgetMixin` replaces ``run_training`` with the same loop (the same
hooks in the same order) whose condition is read again every epoch, and after each epoch re-plans
``num_epochs`` with :func:`replan_epochs`: the first epoch carries the warm-up, the later ones give the
pace, and a shared machine's pace changes, so the plan is redone every epoch, down to keep to the budget or
back up to use time freed by faster epochs, never past the epochs the run started with. The poly
learning-rate schedule is shortened with it, so the run still ends at a low learning rate.

Use it from nnU-Net's own CLI as ``nnUNetTrainer_TimeBudget`` (``SPINESEG_TIME_BUDGET_MIN`` minutes), or from
spineseg with ``train(..., time_budget_s=…)`` / ``spineseg train-seg --time-budget`` on any trainer
(:func:`with_time_budget`). This module imports no nnU-Net, so the arithmetic is tested without it; nnU-Net
imports it as the top-level module ``spineseg_budget`` when it searches ``nnUNet_extTrainer``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)

#: Minutes of training for ``nnUNetTrainer_TimeBudget`` when nnU-Net's own ``nnUNetv2_train`` runs it.
BUDGET_VAR = "SPINESEG_TIME_BUDGET_MIN"


def epoch_pace(done: int, elapsed_s: float, first_epoch_s: float) -> float:
    """Seconds per epoch: the epochs after the first (which carries the warm-up), or the first alone."""
    return elapsed_s if done < 2 else (elapsed_s - first_epoch_s) / (done - 1)


def replan_epochs(done: int, elapsed_s: float, first_epoch_s: float, budget_s: float, current: int, upper: int) -> int:
    """The number of epochs after ``done`` of them took ``elapsed_s``: what fits in ``budget_s`` at the
    pace, at least ``done``, at most ``upper``; ``current`` is kept unless the plan shrinks or grows by 2+."""
    per_epoch = epoch_pace(done, elapsed_s, first_epoch_s)
    fits = done + int((budget_s - elapsed_s) // max(per_epoch, 1e-6))
    new = min(upper, max(done, fits))
    return new if new < current or new >= current + 2 else current


def budget_from_env() -> float | None:
    """``$SPINESEG_TIME_BUDGET_MIN`` in seconds, None when unset; a value that is not a positive number is refused."""
    value = os.environ.get(BUDGET_VAR, "").strip()
    if not value:
        return None
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise ValueError(f"{BUDGET_VAR} must be a positive number of minutes, got {value!r}")
    return minutes * 60.0


class TimeBudgetMixin:
    """Put before an nnU-Net trainer class: ``run_training`` keeps to ``time_budget_s`` (see the module doc).

    ``time_budget_s`` None (the default) reads ``$SPINESEG_TIME_BUDGET_MIN``; without either, nnU-Net's own
    loop runs unchanged.
    """

    time_budget_s: float | None = None

    def run_training(self) -> None:
        budget_s = self.time_budget_s if self.time_budget_s is not None else budget_from_env()
        if budget_s is None:
            super().run_training()  # type: ignore[misc]
            return
        self._run_training_budgeted(float(budget_s))

    def _run_training_budgeted(self, budget_s: float) -> None:
        import torch

        tr: Any = self
        tr.on_train_start()  # network build, data loaders: not an epoch's cost
        upper = int(tr.num_epochs)  # the caller's bound: the plan may grow back up to it, never past it
        t0 = time.perf_counter()
        first_epoch_s: float | None = None
        while tr.current_epoch < tr.num_epochs:
            tr.on_epoch_start()
            tr.on_train_epoch_start()
            tr.on_train_epoch_end(
                [tr.train_step(next(tr.dataloader_train)) for _ in range(tr.num_iterations_per_epoch)]
            )
            with torch.no_grad():
                tr.on_validation_epoch_start()
                tr.on_validation_epoch_end(
                    [tr.validation_step(next(tr.dataloader_val)) for _ in range(tr.num_val_iterations_per_epoch)]
                )
            tr.on_epoch_end()
            done = int(tr.current_epoch)
            elapsed = time.perf_counter() - t0
            if first_epoch_s is None:
                first_epoch_s = elapsed
            new = replan_epochs(done, elapsed, first_epoch_s, budget_s, int(tr.num_epochs), upper)
            if new != tr.num_epochs:
                log.info(
                    "time budget %.0f s at %.1f s/epoch after %d epochs: %d epochs instead of %d",
                    budget_s,
                    epoch_pace(done, elapsed, first_epoch_s),
                    done,
                    new,
                    tr.num_epochs,
                )
                tr.num_epochs = new
                scheduler = getattr(tr, "lr_scheduler", None)
                if scheduler is not None and hasattr(scheduler, "max_steps"):
                    scheduler.max_steps = new
        tr.on_train_end()


def with_time_budget(trainer_cls: type) -> type:
    """``trainer_cls`` with :class:`TimeBudgetMixin` in front, under the same name (a checkpoint records the
    trainer's class name, and prediction later loads that class: the budget changes training only)."""
    if issubclass(trainer_cls, TimeBudgetMixin):
        return trainer_cls
    return type(
        trainer_cls.__name__,
        (TimeBudgetMixin, trainer_cls),
        {
            "__module__": trainer_cls.__module__,
            "__qualname__": trainer_cls.__qualname__,
            "__doc__": trainer_cls.__doc__,
        },
    )
