"""The wall-clock budget as an nnU-Net trainer variant: its re-planning, without nnU-Net or a GPU."""

from __future__ import annotations

import pytest

from spine_seg_nnunet_tasks.trainers import spineseg_budget as B


def test_replan_cuts_to_what_fits_after_the_warm_up_epoch():
    # first epoch 30 s (warm-up), budget 100 s: the pace is unknown yet, so the first epoch is the pace
    assert B.replan_epochs(1, 30.0, 30.0, 100.0, current=50, upper=50) == 3
    # three epochs in 50 s, the later two at 10 s each: 50 s left → 5 more
    assert B.replan_epochs(3, 50.0, 30.0, 100.0, current=3, upper=50) == 8
    # never past the caller's bound, never below what is done
    assert B.replan_epochs(3, 50.0, 30.0, 10_000.0, current=8, upper=20) == 20
    assert B.replan_epochs(3, 500.0, 30.0, 100.0, current=8, upper=20) == 3
    # a one-epoch gain is not worth a new plan (no flapping), a two-epoch one is
    assert B.replan_epochs(3, 50.0, 30.0, 65.0, current=4, upper=50) == 4
    assert B.replan_epochs(3, 50.0, 30.0, 80.0, current=4, upper=50) == 6


class _Clock:
    def __init__(self, steps):
        self.t, self.steps = 0.0, list(steps)

    def perf_counter(self):
        return self.t


class _Scheduler:
    max_steps = 1000


class _Base:
    """The hooks of nnU-Net's trainer that the loop calls, recording the epochs; each epoch costs ``pace`` s."""

    def __init__(self, clock, paces, epochs=1000):
        self.clock, self.paces, self.num_epochs, self.current_epoch = clock, list(paces), epochs, 0
        self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 1
        self.dataloader_train = self.dataloader_val = iter(range(10**6))
        self.lr_scheduler, self.calls = _Scheduler(), []

    def run_training(self):
        self.calls.append("nnunet loop")

    def on_train_start(self):
        self.calls.append("start")

    def on_train_end(self):
        self.calls.append("end")

    def on_epoch_start(self):
        pass

    def on_train_epoch_start(self):
        pass

    def train_step(self, batch):
        return batch

    def on_train_epoch_end(self, outputs):
        pass

    def on_validation_epoch_start(self):
        pass

    def validation_step(self, batch):
        return batch

    def on_validation_epoch_end(self, outputs):
        pass

    def on_epoch_end(self):
        self.clock.t += self.paces[min(self.current_epoch, len(self.paces) - 1)]
        self.current_epoch += 1


def test_the_mixin_keeps_to_the_budget_and_shortens_the_schedule(monkeypatch: pytest.MonkeyPatch):
    clock = _Clock(())
    monkeypatch.setattr(B, "time", clock)
    budgeted = B.with_time_budget(_Base)
    assert budgeted.__name__ == "_Base" and issubclass(budgeted, B.TimeBudgetMixin)
    tr = budgeted(clock, paces=[30.0, 10.0])  # warm-up 30 s, then 10 s per epoch
    tr.time_budget_s = 100.0
    tr.run_training()
    assert tr.calls == ["start", "end"] and tr.current_epoch == tr.num_epochs == 8
    assert tr.lr_scheduler.max_steps == 8 and clock.t == 100.0


def test_the_mixin_grows_back_when_epochs_get_faster(monkeypatch: pytest.MonkeyPatch):
    clock = _Clock(())
    monkeypatch.setattr(B, "time", clock)
    tr = B.with_time_budget(_Base)(clock, paces=[30.0, 30.0, 5.0], epochs=20)
    tr.time_budget_s = 100.0
    tr.run_training()
    assert 3 < tr.num_epochs <= 20 and tr.current_epoch == tr.num_epochs and clock.t <= 100.0 + 5.0


def test_without_a_budget_nnunet_runs_its_own_loop(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(B.BUDGET_VAR, raising=False)
    tr = B.with_time_budget(_Base)(_Clock(()), paces=[1.0])
    tr.run_training()
    assert tr.calls == ["nnunet loop"]
    monkeypatch.setenv(B.BUDGET_VAR, "1.5")
    assert B.budget_from_env() == 90.0
    monkeypatch.setenv(B.BUDGET_VAR, "soon")
    with pytest.raises(ValueError, match="SPINESEG_TIME_BUDGET_MIN"):
        B.budget_from_env()


def test_the_trainer_variant_is_registered():
    import spine_seg_nnunet_tasks.trainers as trainers

    assert "nnUNetTrainer_TimeBudget" in trainers.BUDGET_TRAINER_NAMES
    src = trainers.__path__[0] + "/spineseg_trainers.py"
    assert "class nnUNetTrainer_TimeBudget(TimeBudgetMixin, nnUNetTrainer)" in open(src, encoding="utf-8").read()
