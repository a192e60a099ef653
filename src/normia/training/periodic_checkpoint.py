"""Periodic checkpoints that happen: every `checkpoint.every_n_steps` optimizer steps and/or every
`checkpoint.every_minutes` of wall clock (what a preemptible job needs), at the end of training, and on request (a
stop, a preemption). Each is `checkpoints/step-NNNNNNNN.ckpt` (a file, or a sharded folder under FSDP); once it is
complete, `checkpoints/last.ckpt` is pointed at it (a symbolic link, replaced atomically) and periodic checkpoints
beyond the newest `keep_last` are deleted, never the one being written nor the newest complete one. The best
checkpoint by the monitored metric is Lightning's ModelCheckpoint's, kept apart.

Why not Lightning's ModelCheckpoint for these: it saves `last` only beside a top-k save (save_top_k=0 never wrote
one at a validation, so a SIGKILLed run had nothing to resume from), takes steps OR time but not both, and knows
neither sharded folders made visible atomically nor asynchronous writes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L

from normia.training.callbacks import max_over_ranks
from normia.training.checkpoint import LAST, step_checkpoints
from normia.training.checkpoint_writer import WRITER


def step_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step-{step:08d}.ckpt"


def point_last_at(target: Path) -> None:
    """checkpoints/last.ckpt -> target (relative link, replaced by one rename: a reader sees the old target or the
    new one). A real file or folder of that name (an earlier normia's) is replaced too."""
    link = target.parent / LAST
    tmp = target.parent / f".{LAST}.link"
    tmp.unlink(missing_ok=True)
    os.symlink(target.name, tmp)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)


def remove_old(folder: Path, keep_last: int, newest: Path) -> list[Path]:
    """Delete the periodic checkpoints older than the newest `keep_last` (never `newest`); returns what went."""
    if keep_last <= 0:
        return []
    complete = [path for _, path in step_checkpoints(folder)]
    removed = []
    for path in complete[:-keep_last]:
        if path == newest:
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def remove_killed_writes(folder: Path) -> None:
    """Temporaries of periodic saves that were killed mid-write (`.step-N.ckpt.<x>.tmp` files, `.step-N.ckpt.partial`
    folders: as large as a checkpoint each). Called once a write has completed: every save of this run waits for
    the write before it, so none of them is still being written."""
    for entry in folder.glob(".step-*"):
        if entry.name.endswith((".tmp", ".partial")):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


class PeriodicCheckpoint(L.Callback):
    """Saves step-N.ckpt on a step and/or wall-clock cadence and at the end of fit; `save()` for stops.

    every_n_steps: optimizer steps between saves (None: no step cadence). every_minutes: minutes between saves,
    agreed by every rank at a step boundary (one 1-int all_reduce per step, only when set). keep_last: how many
    periodic checkpoints stay on disk (>= 1)."""

    def __init__(
        self,
        dirpath: str | Path,
        every_n_steps: int | None = None,
        every_minutes: float | None = None,
        keep_last: int = 2,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.every_minutes = every_minutes
        self.keep_last = keep_last
        self.saved_step = -1
        self.saved_path: Path | None = None
        self._seen_step = -1
        self._last_save_time = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seen_step = self.saved_step = trainer.global_step  # a resume does not save again at once
        self._last_save_time = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self._seen_step:  # inside a gradient-accumulation window
            return
        self._seen_step = step
        due = bool(self.every_n_steps) and step % int(self.every_n_steps) == 0
        if self.every_minutes:
            late = time.monotonic() - self._last_save_time >= float(self.every_minutes) * 60.0
            due = bool(
                max_over_ranks(int(late or due), pl_module.device)
            )  # every rank takes the same decision
        if due:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The end of training: the final state is saved (if this step is not yet) and every write has ended."""
        if trainer.global_step > 0 and trainer.global_step != self.saved_step:
            self.save(trainer)
        WRITER.wait()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A failing run still lets a pending write end: the checkpoint it was writing is complete for a resume."""
        try:
            WRITER.wait()
        except Exception as err:  # the run's own exception is the one to report
            print(f"warning: a checkpoint write failed too: {err}", flush=True)

    def save(self, trainer: L.Trainer, wait: bool = False) -> Path:
        """Save this step on every rank (a collective under FSDP); wait=True returns once it is on disk and
        last.ckpt points at it (a stop or a preemption exits right after)."""
        step = trainer.global_step
        path = step_path(self.dirpath, step)
        started = time.perf_counter()
        trainer.save_checkpoint(path, weights_only=False)  # the whole state: optimizer, loops, callbacks
        WRITER.add_blocked(time.perf_counter() - started)
        self.saved_step, self.saved_path = step, path
        self._last_save_time = time.monotonic()
        if trainer.is_global_zero:
            WRITER.submit(lambda: self._publish(path))  # after the write: the writer keeps the order
            for logger in trainer.loggers:
                logger.log_metrics(
                    {"checkpoint/blocked_s": WRITER.blocked_s, "checkpoint/saves": WRITER.saves}, step
                )
        if wait:
            WRITER.wait()
        return path

    def _publish(self, path: Path) -> None:
        point_last_at(path)
        remove_old(self.dirpath, self.keep_last, path)
        remove_killed_writes(self.dirpath)
