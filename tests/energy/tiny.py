"""A tiny token model whose training and validation steps move test-double energy counters by known amounts, so a
real Lightning Trainer's energy figures can be checked exactly. Used in-process and by ddp_energy.py."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from fakes import FakeCounter
from lightning.pytorch.loggers.logger import Logger
from torch.utils.data import DataLoader, TensorDataset

from normia.energy.counters import CounterSet

SEQ = 8


class TinyTokens(L.LightningModule):
    """Each training step adds `train_j` to `gpu`, each validation step `val_j` (the rank's own GPU double)."""

    def __init__(self, gpu: FakeCounter, train_j: float = 1.0, val_j: float = 0.25) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(16, 4)
        self.gpu, self.train_j, self.val_j = gpu, train_j, val_j

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        self.gpu.joules += self.train_j
        return self.emb(batch[0]).pow(2).mean()

    def validation_step(self, batch: Any, idx: int) -> None:
        self.gpu.joules += self.val_j
        self.log("val/loss", self.emb(batch[0]).pow(2).mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(n: int, batch: int) -> DataLoader:
    tokens = torch.randint(0, 16, (n, SEQ), generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(tokens), batch_size=batch)


def gpu_only(gpu: FakeCounter) -> Any:
    """An `open_counters` giving the rank one GPU double and no CPU counter."""
    return lambda device, leader: CounterSet([gpu.counter()])


class Recorder(Logger):
    """A logger keeping what it was given (metrics and tags), on rank 0."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)


def trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kwargs,
    )
