"""A test callback that presses Ctrl-C (SIGINT to this process) after a given step: an interruption at a known
point, through the same path a user's Ctrl-C takes."""

from __future__ import annotations

import os
import signal

import lightning as L


class CtrlCAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
