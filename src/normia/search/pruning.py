"""The trial's Lightning callback: reports the monitored metric to Optuna at each validation and, when the pruner
says so, stops training cleanly (trainer.should_stop: the epoch ends, checkpoints and done.json are written, and the
MLflow run ends FINISHED, tagged search.state=PRUNED by the worker). FINISHED rather than KILLED: in normia KILLED
means "stopped, resumable", while a pruned trial is over by decision and its metrics are complete up to its stop."""

from __future__ import annotations

import math
from typing import Any

import lightning as L


class TrialReporter(L.Callback):
    """Reports `monitor` after each validation as step 0, 1, ... (the validation's index, so that trials with other
    batch sizes compare at the same point; a pruner's n_warmup_steps=1 spares the first validation); with prune=True, stops training when the trial should be pruned."""

    def __init__(self, trial: Any, monitor: str, prune: bool = True):
        self.trial = trial
        self.monitor = monitor
        self.prune = prune
        self.validations = 0
        self.last_value: float | None = None
        self.pruned_at: int | None = None
        self.run_id: str | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._note_run(trainer)
        if trainer.sanity_checking or self.pruned_at is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        self.validations += 1
        number = float(value)
        if not math.isfinite(number):
            return
        self.last_value = number
        self.trial.report(number, self.validations - 1)  # Optuna's steps count from 0
        if self.prune and self.trial.should_prune():
            self.pruned_at = self.validations
            print(
                f"trial {self.trial.number} pruned at validation {self.validations} ({self.monitor}={number:.4f})",
                flush=True,
            )
            trainer.should_stop = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The MLflow run exists from here on: store its id in the trial at once, so that a worker killed mid-trial
        leaves the id for the one that fails the trial (claim.requeue_dead) to close the run."""
        if self.run_id is None:
            self._note_run(trainer)
            if self.run_id is not None:
                self.trial.set_user_attr("search.run_id", self.run_id)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._note_run(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._note_run(trainer)

    def _note_run(self, trainer: L.Trainer) -> None:
        logger = trainer.logger
        run_id = getattr(logger, "version", None) if logger is not None else None
        if isinstance(run_id, str) and run_id:
            self.run_id = run_id
