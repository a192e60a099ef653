"""The one LightningModule: wraps any model that implements loss(batch) -> (loss, metrics)."""

from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor

from normia.training.optim import build_optimizer, build_scheduler
from normia.training.val_metrics import WeightedMeans


def count_units(batch: object) -> tuple[int, int]:
    """(samples, tokens) in a batch: samples = leading dim of the first tensor; tokens = its numel when it holds
    integer token ids (language models), else 0."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(first, Tensor):
        return 0, 0
    samples = int(first.shape[0]) if first.ndim else 1
    tokens = first.numel() if not first.is_floating_point() and first.ndim >= 2 else 0
    return samples, tokens


class TaskModule(L.LightningModule):
    """Training/validation steps, metric logging, optimizer + schedule, optional FSDP2 sharding and compile."""

    def __init__(self, model: torch.nn.Module, optim_cfg: DictConfig, compile_model: bool = False):
        super().__init__()
        self.model = model
        self.optim_cfg = optim_cfg
        self.compile_model = compile_model
        self._sharded = False
        self._val_means = WeightedMeans()

    def configure_model(self) -> None:
        """FSDP2: shard every child module with parameters, then the root (called under ModelParallelStrategy)."""
        mesh = getattr(self, "device_mesh", None)
        if mesh is None or self._sharded:
            return
        from torch.distributed.fsdp import fully_shard

        dp_mesh = mesh["data_parallel"]
        for module in self.model.modules():
            if module is not self.model and _is_block(module):
                fully_shard(module, mesh=dp_mesh)
        fully_shard(self.model, mesh=dp_mesh)
        self._sharded = True

    def setup(self, stage: str) -> None:
        if self.compile_model and not getattr(self.model, "_normia_compiled", False):
            self.model.compile()
            self.model._normia_compiled = True

    def training_step(self, batch: object, batch_idx: int) -> Tensor:
        loss, metrics = self.model.loss(batch)
        # self.log costs ~1 ms a call on a CPU: log only on the steps that are written out (log_every_n_steps).
        # sync_dist: the mean over the ranks' equal-sized batches is the global batch's, not rank 0's share of it
        # (the same step on every rank decides, so the ranks all join the all-reduce).
        if (self.trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % self.trainer.log_every_n_steps == 0:
            # Not on the progress bar: Lightning converts every bar value to a Python number at every batch end,
            # a host read per step (a device sync on a GPU, issue 15); the bar shows val/loss and val/acc.
            self.log("train/loss", loss, sync_dist=True)
            for name, value in metrics.items():
                self.log(f"train/{name}", value, sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_means.reset()

    def validation_step(self, batch: object, batch_idx: int) -> None:
        """Accumulate only: the metrics are reduced and logged once, in on_validation_epoch_end."""
        loss, metrics = self.model.loss(batch)
        size, _ = count_units(batch)
        self._val_means.update({"loss": loss, **metrics}, size)

    def on_validation_epoch_end(self) -> None:
        """Exact means over the validation set, the same for any number of ranks (see val_metrics.py).

        The values are already equal on every rank; sync_dist with reduce_fx="max" keeps them bit for bit (a mean of
        W equal floats need not be) and tells Lightning they are synchronised."""
        means = self._val_means.compute(lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        for name, value in means.items():
            self.log(f"val/{name}", value, prog_bar=name in ("loss", "acc"), sync_dist=True, reduce_fx="max")

    def configure_callbacks(self) -> list[L.Callback]:
        """Callbacks the wrapped model asks for (e.g. a pretrained model's export), added by Lightning at fit."""
        hook = getattr(self.model, "configure_callbacks", None)
        return list(hook()) if callable(hook) else []

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, except under bf16 mixed precision (no GradScaler: nothing to unscale), where
        Lightning refuses every optimizer that "unscales internally", i.e. every fused one, a check meant for fp16's
        GradScaler. normia's optimizers are fused: that is how a non-finite step is skipped on the device
        (training/health.py), so the clipping runs here through Lightning's plain implementation."""
        precision = self.trainer.precision_plugin
        if gradient_clip_val and getattr(precision, "scaler", "none here") is None:
            from lightning.pytorch.plugins.precision.precision import Precision
            from lightning.pytorch.utilities import GradClipAlgorithmType

            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM)
            Precision.clip_gradients(precision, optimizer, gradient_clip_val, algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict:
        # fp16's GradScaler and a fused optimizer cannot be combined with clipping (Lightning refuses it, and the
        # gradients would be clipped while still scaled): the unfused optimizer there.
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        fused = not (scaled and self.trainer.gradient_clip_val)
        optimizer = build_optimizer(self.model.parameters(), self.optim_cfg, fused=fused)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.optim_cfg, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _is_block(module: torch.nn.Module) -> bool:
    """A transformer block or any direct container of parameters worth its own FSDP unit."""
    name = type(module).__name__.lower()
    return name.endswith(("block", "layer")) and any(True for _ in module.parameters())
