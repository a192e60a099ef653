"""Training health: a diverged run (non-finite loss) must fail, not finish as a success; a misspelt `monitor` is
refused after the sanity check, before the first training step and before any MLflow run exists."""

from __future__ import annotations

import math
import sys
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from normia.errors import UserError, did_you_mean
from normia.training.callbacks import max_over_ranks

NONFINITE_CHOICES = ("stop", "skip")


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the run is marked FAILED and the command exits 3."""

    exit_code = 3


class BadTargets(UserError):
    """A cross-entropy target outside [0, vocab) was recorded on the device (normia.ops defers that check on GPUs,
    issue 15) and found at a check: the run is marked FAILED and the command exits 2 (the data is wrong)."""

    exit_code = 2


def deferred_target_error() -> BadTargets | None:
    """The error normia.ops recorded since the last look, if any (one host read per device that has a record).
    Nothing to read, and no import, when no normia op ever ran in this process."""
    if "normia.ops._deferred" not in sys.modules:
        return None
    from normia.ops import raise_deferred_errors

    try:
        raise_deferred_errors()
    except ValueError as err:
        return BadTargets(f"{err}; check the data's labels against the model's number of classes")
    return None


class NonFiniteLoss(L.Callback):
    """Watches every micro-batch's loss. mode='stop': the run fails (TrainingDiverged on every rank) naming the first
    step whose loss was non-finite; mode='skip': the optimizer step of a batch with a non-finite loss is dropped on
    every rank, and the count is logged.

    'stop' reads no value per step (issue 15: on a GPU each read is a host-device sync), and applies no step whose
    loss or gradients are not finite (issue 23): before each optimizer step, a flag computed on the device (loss and
    gradient norm finite, agreed by every rank in one small all-reduce) is handed to the optimizer as `found_inf`,
    the way torch's GradScaler skips steps, so a fused Adam/AdamW/SGD (normia's optimizers, training/optim.py) leaves
    weights and state untouched without the host ever looking. The losses are then read once every `every`
    batches (the logging interval), before any validation and before any checkpoint is written, and the run fails
    naming the first bad step. An optimizer that cannot take `found_inf` (not fused, or under fp16's GradScaler,
    which skips such steps itself) gets no such guard: up to `every - 1` bad steps may be applied before the check,
    never validated nor saved. 'skip' must decide before each optimizer step on the host, so it reads the loss every
    step."""

    def __init__(self, mode: str = "stop", every: int = 1):
        if mode not in NONFINITE_CHOICES:
            raise UserError(
                f"trainer.on_nonfinite_loss={mode!r} is not one of {', '.join(NONFINITE_CHOICES)}"
            )
        self.mode = mode
        self.every = max(1, int(every))
        self.skipped = 0
        self._bad_value: float | None = None
        self._batches = 0  # since the last check
        self._window: list[
            tuple[int, int, torch.Tensor]
        ] = []  # (step, epoch, detached loss) since the last check
        self._step_start = 0  # index in _window of the current optimizer step's first micro-batch
        self.guarded: bool | None = None  # whether the device-side guard ran (None: no step yet)
        self._first_bad: torch.Tensor | None = (
            None  # on the device: first skipped step since the check, or -1
        )

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if self.mode == "stop":
            self._window.append((trainer.global_step, trainer.current_epoch, loss.detach()))
            return
        value = float(loss.detach().float().sum()) if not bool(torch.isfinite(loss.detach()).all()) else None
        if value is not None and self._bad_value is None:
            self._bad_value = value

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        for optimizer in trainer.optimizers if self.guarded else ():
            for name in ("found_inf", "grad_scale"):  # this step's only: nothing else may see them
                if name in vars(optimizer):
                    delattr(optimizer, name)
        self._batches += 1
        if self._batches >= self.every:
            self.check(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One read for the losses kept since the last check; every rank calls it at the same points (a fixed
        batch count, validation start, checkpoint save, training end) and they agree in one small all-reduce.
        Also where normia.ops' deferred target checks are read, in both modes: the host waits here anyway."""
        self._batches = 0
        bad_targets = deferred_target_error()
        first = self._first_nonfinite() if self.mode == "stop" else None
        skipped_at = self._first_skipped()
        # One all-reduce for both verdicts: 2 bad targets (data), 1 non-finite loss or gradients, 0 neither.
        diverged = first is not None or skipped_at is not None
        verdict = max_over_ranks(2 if bad_targets is not None else 1 if diverged else 0, pl_module.device)
        if verdict == 2:
            if bad_targets is None:
                raise SystemExit(BadTargets.exit_code)  # another rank says why
            raise bad_targets
        if verdict == 1:
            if trainer.global_rank != 0:
                raise SystemExit(TrainingDiverged.exit_code)  # every rank stops here; rank 0 says why, once
            if first is not None:
                where = f"loss is {first[2]} at step {first[0]} (epoch {first[1]})"
            elif skipped_at is not None:
                where = f"gradients are not finite at step {skipped_at} (the loss was finite)"
            else:
                where = f"loss is non-finite on another rank (checked at step {trainer.global_step})"
            unapplied = "; that step was not applied" if skipped_at is not None else ""
            raise TrainingDiverged(
                f"training diverged: {where}{unapplied}; "
                "lower optim.lr or set trainer.gradient_clip_val, or trainer.on_nonfinite_loss=skip to skip such steps"
            )

    def _first_skipped(self) -> int | None:
        """The first optimizer step the device-side guard skipped since the last check (one host read), or None."""
        first, self._first_bad = self._first_bad, None
        if first is None:
            return None
        step = int(first.item())
        return step if step >= 0 else None

    def _first_nonfinite(self) -> tuple[int, int, float] | None:
        """(step, epoch, loss) of the first non-finite loss kept since the last check, in one host read."""
        window, self._window = self._window, []
        self._step_start = 0
        if not window:
            return None
        losses = torch.stack([loss.float().sum() for _, _, loss in window])
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return None
        index = int((~finite).nonzero()[0, 0])
        return window[index][0], window[index][1], float(losses[index])

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.mode != "skip":
            losses = [loss for _, _, loss in self._window[self._step_start :]]
            self._step_start = len(self._window)
            self.guarded = can_skip_on_device(optimizer, trainer)
            if self.guarded:  # GradScaler's protocol, read by torch's fused optimizers after the closure
                inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper, where there is one
                inner.grad_scale = None
                inner.found_inf = bad = step_is_bad(losses, inner, pl_module.device)
                if self._first_bad is None:
                    self._first_bad = torch.full((), -1.0, device=bad.device)
                fresh = (bad > 0) & (self._first_bad < 0)
                self._first_bad = torch.where(fresh, float(trainer.global_step), self._first_bad)
            return
        bad = max_over_ranks(int(self._bad_value is not None), pl_module.device)
        self._bad_value = None
        if not bad:
            return
        # Gradients set to None: every optimizer leaves those parameters (and their state) untouched.
        optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        if trainer.is_global_zero:
            print(
                f"warning: non-finite loss at step {trainer.global_step}: optimizer step skipped", flush=True
            )
        for logger in trainer.loggers:
            logger.log_metrics({"train/skipped_steps": float(self.skipped)}, trainer.global_step)


def can_skip_on_device(optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> bool:
    """Whether `optimizer` skips its update when given `found_inf` (torch's fused Adam, AdamW and SGD do), and no
    GradScaler (fp16) is already handing it one."""
    inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper, where there is one
    if not getattr(inner, "_step_supports_amp_scaling", False):
        return False
    return getattr(trainer.precision_plugin, "scaler", None) is None


def step_is_bad(
    losses: list[torch.Tensor], optimizer: torch.optim.Optimizer, device: torch.device
) -> torch.Tensor:
    """1.0 when a loss of this step or a gradient is not finite on any rank, else 0.0: a float32 scalar tensor on
    `device`, computed without a host read (the ranks agree in one all-reduce of one element, queued on the device).
    Sharded gradients (FSDP's DTensors) are checked by each rank on its own shard, hence the all-reduce."""
    grads = [
        p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None
    ]
    parts = [torch.stack([loss.float().sum() for loss in losses]).to(device)] if losses else []
    if grads:
        parts.append(torch.nn.utils.get_total_norm(grads, foreach=None).float().reshape(1).to(device))
    if not parts:
        return torch.zeros((), dtype=torch.float32, device=device)
    bad = (~torch.isfinite(torch.cat([p.reshape(-1) for p in parts]))).any().float()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bad


def nonfinite_mode(cfg: Any) -> str:
    """trainer.on_nonfinite_loss, 'stop' when the schema has no such key (yet)."""
    return str(cfg.trainer.get("on_nonfinite_loss", None) or "stop")


class MonitorCheck(L.Callback):
    """After the first validation pass (the sanity check, or the first real one if there is none), the model's
    metric names are known: a `monitor` that is not among them is refused with the closest name. Runs before
    ModelCheckpoint (checkpoint callbacks run last), whose own error is a traceback after a whole epoch."""

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.checked = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.checked:
            return
        self.checked = True
        known = set(trainer.callback_metrics)
        # train/<name> is logged only every log_every_n_steps; its names mirror val/<name>.
        known |= {"train/" + k[len("val/") :] for k in known if k.startswith("val/")}
        known |= {"step", "epoch"}
        if self.monitor not in known:
            raise UserError(
                f"monitor={self.monitor!r} is not a metric this model logs{did_you_mean(self.monitor, known)}; "
                "set monitor=<one of its metrics>"
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """No validation ever ran (e.g. trainer.limit_val_batches=0): say so once, instead of Lightning's warning at
        every save (silenced, see train/quiet.py)."""
        if not self.checked and self.monitor not in trainer.callback_metrics and trainer.is_global_zero:
            print(
                f"warning: monitor={self.monitor} was never measured (no validation ran): no best checkpoint"
            )


def json_safe(obj: Any) -> Any:
    """NaN and infinities as the strings 'nan', 'inf', '-inf' (bare NaN is not JSON), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
