"""Issue 15: normia's training, logging and health code reads no tensor value on the host per step (on a GPU each
such read is a host-device sync). Values are read only on logging steps (every trainer.log_every_n_steps).

The reads are counted with a TorchDispatchMode over a real run of the quickstart: every aten._local_scalar_dense
(what .item(), float(t), int(t) and bool(t) come down to) whose nearest caller outside torch is normia's or
Lightning's code, attributed to the step during which it happened."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from normia.config.compose import compose_job
from normia.training.run import run_training

READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default}
TORCH_DIR = str(Path(torch.__file__).parent)
TORCH_OPTIM = str(Path(torch.__file__).parent / "optim")


def _caller() -> str:
    """file:line of the Python code that asked for the read ('' for torch's own reads, such as an optimizer's CPU
    step counter, which are no device sync)."""
    frame = sys._getframe(2)
    # Up through the dispatch machinery (dynamo's disable wrappers) between the read and its caller.
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        if frame.f_code.co_filename.startswith(TORCH_OPTIM):
            return ""
        frame = frame.f_back
    if frame is None:
        return ""
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class ReadCounter(TorchDispatchMode):
    """Counts host reads made by normia's or Lightning's own code (torch's optimizers read their CPU step counter,
    which is no device sync and not ours)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in READS:
            caller = _caller()
            if f"{Path('normia')}" in caller or f"{Path('lightning')}" in caller:
                self.reads.append(caller)
        return func(*args, **(kwargs or {}))


class StepMarks(L.Callback):
    """Notes how many reads were counted when each training batch starts (the reads of step i are those between
    the starts of batches i and i+1, so that Lightning's logging after on_train_batch_end counts for step i)."""

    def __init__(self, counter: ReadCounter) -> None:
        self.counter = counter
        self.marks: list[int] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.marks.append(len(self.counter.reads))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.marks.append(len(self.counter.reads))


def test_no_host_read_outside_logging_steps(workdir: Path, monkeypatch) -> None:
    counter = ReadCounter()
    marks = StepMarks(counter)
    import normia.training.build as build

    monkeypatch.setattr(build, "added_callbacks", lambda cfg, tracker: [marks])
    cfg = compose_job([
        "experiment=quickstart", "trainer.max_steps=10", "trainer.max_epochs=-1", "trainer.log_every_n_steps=5",
        "trainer.enable_progress_bar=false", "logger=none", "trainer.limit_val_batches=0",
        f"paths.output_dir={workdir / 'run'}",
    ])  # fmt: skip
    with counter:
        run_training(cfg)
    per_step = [b - a for a, b in zip(marks.marks, marks.marks[1:])]
    assert len(per_step) == 10, per_step
    quiet = [step for step, n in enumerate(per_step) if n and (step + 1) % 5]
    assert not quiet, f"host reads on non-logging steps {quiet}: {per_step}; callers {counter.reads}"
    assert sum(per_step) > 0, "the logging steps read their values (the counter sees reads)"
