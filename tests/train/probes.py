"""Test callbacks that look inside a real run or disturb it at a known point (added with +callbacks.NAME._target_=
probes.CLASS). They run in the training process itself, so in every local rank too (tests put this folder on
PYTHONPATH for the ranks)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class ShardProbe(L.Callback):
    """Writes, per rank, how the parameters the optimizer updates are held at the first optimizer step: DTensor
    shards under FSDP2, full plain tensors under DDP. (Before that step FSDP2 may hold the root's parameters
    unsharded after a forward; the optimizer always steps on the shards.)"""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.done = False

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.done:
            return
        self.done = True
        names = {id(p): n for n, p in pl_module.model.named_parameters()}
        params = {}
        for group in optimizer.param_groups:
            for param in group["params"]:
                local = param.to_local() if hasattr(param, "to_local") else param
                params[names.get(id(param), f"unnamed{len(params)}")] = {
                    "type": type(param).__name__,
                    "full_numel": param.numel(),
                    "local_numel": local.numel(),
                }
        record = {
            "rank": trainer.global_rank,
            "strategy": [c.__name__ for c in type(trainer.strategy).__mro__],
            "params": params,
        }
        path = Path(self.out_dir) / f"shards-rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))


class DoubleCtrlC(L.Callback):
    """At a given step, Ctrl-C twice in a row, then a long stall (as a slow step would be): a second Ctrl-C must
    abort at once instead of waiting for the step to end and a checkpoint to be written."""

    def __init__(self, step: int, stall_s: float = 120.0):
        self.step = step
        self.stall_s = stall_s

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step:
            return
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(self.stall_s)


class WritesPid(L.Callback):
    """Each rank writes its pid to out_dir at the start of training, so a test can check none is left running."""

    out_dir: str

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.out_dir) / f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))


class StallOrFail(WritesPid):
    """From a given step, rank `fail_rank` raises while every other rank stalls (as a rank stuck in a collective
    or a long computation would). Each rank writes its pid to out_dir, so the test can check none is left."""

    def __init__(self, step: int, fail_rank: int, out_dir: str, stall_s: float = 600.0):
        self.step = step
        self.fail_rank = fail_rank
        self.out_dir = out_dir
        self.stall_s = stall_s

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step:
            return
        if trainer.global_rank == self.fail_rank:
            raise RuntimeError(f"rank {self.fail_rank} fails on purpose at step {self.step}")
        time.sleep(self.stall_s)


class ReportStarted(L.Callback):
    """Writes a marker file (holding the pid) once a rank has trained `step` steps, so a test knows when to press
    Ctrl-C; then, if asked, stalls there (a slow step) so that the test's signals all land inside that step."""

    def __init__(self, out_dir: str, step: int = 2, stall_s: float = 0.0):
        self.out_dir = out_dir
        self.step = step
        self.stall_s = stall_s

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.out_dir) / f"started-rank{trainer.global_rank}").write_text(str(os.getpid()))
            time.sleep(self.stall_s)


class KillDuringCheckpointWrite(L.Callback):
    """Makes checkpoints big (ballast) and, at the save of a given step, SIGKILLs every writing rank as soon as it
    holds a file of that step's checkpoint open (`step-N.ckpt`: the file, its temporary, or a shard of the sharded
    folder; asynchronous writes included, as they happen in a background thread of the same process): the
    processes die in the middle of writing, as on a node failure or an OOM kill."""

    def __init__(self, step: int, ballast_mb: int = 64):
        self.step = step
        self.ballast_mb = ballast_mb

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["ballast"] = torch.zeros(self.ballast_mb * 2**20 // 4)
        if trainer.global_step == self.step:
            folder = Path(trainer.default_root_dir).resolve() / "checkpoints"
            marker = f"step-{self.step:08d}.ckpt"
            threading.Thread(target=_kill_when_writing, args=(folder, marker), daemon=True).start()


def _kill_when_writing(folder: Path, marker: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(folder)) and marker in target:
                os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.0005)


class HangAtStep(WritesPid):
    """Rank `rank` stops making progress at `step` (sleeps; `where`: "one_rank" after that step, or "every_rank":
    a stall shared by all, as a stuck data source would give); writes its pid so the test checks none is left."""

    def __init__(self, step: int, out_dir: str, rank: int = 1, where: str = "one_rank"):
        self.step = step
        self.out_dir = out_dir
        self.rank = rank
        self.where = where

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step:
            return
        if self.where == "every_rank" or trainer.global_rank == self.rank:
            (Path(self.out_dir) / f"hung-rank{trainer.global_rank}").write_text(str(time.time()))
            time.sleep(3600)


class SlowRank(L.Callback):
    """Rank `rank` spends `delay_s` more on its own part of every step (before the forward), as a slow node would."""

    def __init__(self, rank: int = 1, delay_s: float = 0.1):
        self.rank = rank
        self.delay_s = delay_s

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_rank == self.rank:
            time.sleep(self.delay_s)


class SampleIds(L.Callback):
    """Appends, per rank, which samples each training step took: one JSON line {"step", "ids"} per batch, a sample
    named by a fingerprint of its features (exact for the digits data: a weighted sum of its 64 pixels, rounded).
    The ids of one step over all ranks are the global batch: a resume must give the same ones at the same step."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        features = batch[0].detach().to("cpu", torch.float64).flatten(1)
        weights = torch.arange(1, features.shape[1] + 1, dtype=torch.float64)
        ids = [round(float(v), 6) for v in (features * weights).sum(1)]
        path = Path(self.out_dir) / f"ids-rank{trainer.global_rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps({"step": trainer.global_step, "ids": ids}) + "\n")


def samples_by_step(out_dir: str | Path) -> dict[int, list[float]]:
    """{step: sorted ids of the global batch} from every rank's ids-rank*.jsonl in `out_dir`."""
    steps: dict[int, list[float]] = {}
    for path in Path(out_dir).glob("ids-rank*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            steps.setdefault(int(row["step"]), []).extend(row["ids"])
    return {step: sorted(ids) for step, ids in steps.items()}


class WeightsEachStep(L.Callback):
    """Writes, per rank, after every training batch: the step, whether this rank's parameters (its shards under
    FSDP2) are all finite, and their sum in float64 (equal sums across a step: the step changed nothing)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        local = [p.to_local() if hasattr(p, "to_local") else p for p in pl_module.parameters()]
        record = {
            "step": trainer.global_step,
            "finite": all(bool(torch.isfinite(t).all()) for t in local),
            "sum": float(sum(t.detach().double().sum() for t in local)),
        }
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(self.out_dir) / f"weights-rank{trainer.global_rank}.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")


class NanGradientAt(L.Callback):
    """One rank's gradient shard becomes NaN after the backward of the batch at `step` (a bad GPU, a flaky link):
    the loss stays finite, so only a gradient check sees it, and only that rank holds the bad values."""

    def __init__(self, step: int, rank: int = 0):
        self.step, self.rank = int(step), int(rank)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.step or trainer.global_rank != self.rank:
            return
        for p in pl_module.parameters():
            if p.grad is not None:
                grad = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
                with torch.no_grad():
                    grad.view(-1)[0] = float("nan")
                return


def weights_by_step(out_dir: str | Path, rank: int) -> dict[int, dict[str, Any]]:
    """{step: record} of WeightsEachStep for one rank."""
    lines = (Path(out_dir) / f"weights-rank{rank}.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines)}
