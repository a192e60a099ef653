"""Checkpoint writes in the background: the step loop is blocked only while the state is staged (copied to host
memory, pinned on GPUs), then one writer thread per process writes it. One thread keeps the order of writes and of
what follows them (publishing `last.ckpt`, retention): a save queued after another starts when that one has ended.

Why not Lightning's AsyncCheckpointIO: it hands the LIVE state dict to its thread, so the weights the optimizer
updates meanwhile are what gets written (a checkpoint of no step at all); the staging copy here is what makes an
asynchronous checkpoint equal to a synchronous one. torchtitan's checkpointer does the same (async, and
async-with-pinned-memory modes)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


class CheckpointWriter:
    """The process's queue of background checkpoint work. `blocked_s` counts the seconds saves held the step loop
    (staging, or waiting for the previous write); `write_s` the seconds the background writes took."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self.blocked_s = 0.0
        self.write_s = 0.0
        self.saves = 0

    def submit(self, work: Callable[[], Any]) -> Future:
        """Queue `work` after everything queued before it; its exception is raised by the next wait()."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="normia-checkpoint")

        def timed() -> Any:
            started = time.perf_counter()
            try:
                return work()
            finally:
                self.write_s += time.perf_counter() - started

        future = self._executor.submit(timed)
        self._pending.append(future)
        return future

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._pending)

    def wait(self) -> None:
        """Block until every queued write has finished; re-raise the first failure (a checkpoint that could not be
        written must not go unnoticed until the resume that needs it)."""
        pending, self._pending = self._pending, []
        errors = []
        for future in pending:
            try:
                future.result()
            except BaseException as err:  # every future is waited for before raising
                errors.append(err)
        if errors:
            raise errors[0]

    def add_blocked(self, seconds: float) -> None:
        self.blocked_s += seconds
        self.saves += 1

    def reset(self) -> None:
        """Forget the counters (a new fit in the same process, e.g. normia search's trials)."""
        self.wait()
        self.blocked_s = self.write_s = 0.0
        self.saves = 0


WRITER = CheckpointWriter()


def stage(obj: Any, pin: bool | None = None) -> Any:
    """A copy of a checkpoint's containers with every tensor copied to host memory (pinned when CUDA is there and
    `pin` is not False), so the training step may change the live tensors while the copy is written. Non-tensor
    leaves are shared (they are not updated in place by training)."""
    if pin is None:
        pin = torch.cuda.is_available()
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "cpu" and not pin:
            return obj.detach().clone()
        out = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=pin)
        out.copy_(obj.detach())  # blocking: the copy is complete when the step loop goes on
        return out
    if isinstance(obj, dict):
        copied = {k: stage(v, pin) for k, v in obj.items()}
        return OrderedDict(copied) if isinstance(obj, OrderedDict) else copied
    if isinstance(obj, list):
        return [stage(v, pin) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(stage(v, pin) for v in obj)
    return obj
