"""Fault injection for the launcher tests, imported on the Slurm nodes through PYTHONPATH (tests/slurm)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L


class CrashOnRank(L.Callback):
    """Raise on one rank at one step, the way a real bug or a bad node would; the other ranks go on."""

    def __init__(self, rank: int = 1, at_step: int = 2):
        self.rank = rank
        self.at_step = at_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.at_step:
            raise RuntimeError(f"injected failure on rank {self.rank} at step {trainer.global_step}")


class SlowSteps(L.Callback):
    """Sleep after each step so a test can send a signal while training runs (the math is untouched)."""

    def __init__(self, seconds: float = 0.1):
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        time.sleep(self.seconds)


class _Lingering:
    """Sleeps when the interpreter destroys it: during module teardown, after Python has reset its signal handlers."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.sleep = time.sleep  # the time module may be gone by then

    def __del__(self) -> None:
        self.sleep(self.seconds)


_LINGER: list[_Lingering] = []


class SlowExit(L.Callback):
    """Make the process take `seconds` longer to exit after the job has ended, the way a GPU job's teardown (NCCL,
    CUDA context, logger threads) does, so a signal sent after "Job completed successfully" lands while it exits."""

    def __init__(self, seconds: float = 4.0):
        self.seconds = seconds

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _LINGER.append(_Lingering(self.seconds))


class NodeFaultOnFirstAttempt(L.Callback):
    """Rank `rank` meets a fault of its node at `at_step` in the job's first attempt only (SLURM_RESTART_COUNT unset
    or 0); the requeued attempt, elsewhere, runs through. `fault`: "hang" (stops making progress, as a bad GPU or link
    would hang it), "ecc" or "nccl" (raise CUDA's uncorrectable-ECC or NCCL's 'unhandled system error' message, which
    CPU machines cannot produce)."""

    def __init__(self, rank: int = 1, at_step: int = 4, fault: str = "hang"):
        self.rank = rank
        self.at_step = at_step
        self.fault = fault

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        import os

        first = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) == 0
        if first and trainer.global_rank == self.rank and trainer.global_step == self.at_step:
            (Path(trainer.default_root_dir) / "fault_at").write_text(
                str(time.time())
            )  # for the test's figures
            if self.fault == "nccl":
                raise RuntimeError(
                    "NCCL error in: ProcessGroupNCCL.cpp:1935, unhandled system error (run with NCCL_DEBUG=INFO for "
                    "details), NCCL version 2.21.5"
                )
            if self.fault == "ecc":
                raise RuntimeError("CUDA error: uncorrectable ECC error encountered")
            time.sleep(3600)
