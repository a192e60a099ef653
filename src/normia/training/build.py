"""Config -> objects: model, data, tracker, callbacks and the Lightning Trainer. No training happens here."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from normia.config.checkpoint_settings import checkpoint_settings
from normia.config.flatten import flatten
from normia.config.resolved_targets import check_node
from normia.config.secrets import redact, redact_overrides
from normia.energy.callback import from_config as energy_callback
from normia.errors import UserError
from normia.tracking.mlflow_logger import MlflowTracker
from normia.tracking.run_tags import run_tags
from normia.tracking.tags import check_user_tags, dataset_input, default_run_name, system_tags
from normia.tracking.uri import resolve_tracking_uri
from normia.training.callbacks import (
    CallbackGroup,
    GracefulStop,
    NormiaState,
    Throughput,
    added_callbacks,
)
from normia.training.checkpoint import AtomicCheckpointIO, ModelCheckpoint
from normia.training.float8 import lightning_precision
from normia.training.health import MonitorCheck, NonFiniteLoss, nonfinite_mode
from normia.training.periodic_checkpoint import PeriodicCheckpoint
from normia.training.resume_check import CHANGES_TAG
from normia.training.watchdog import HangWatchdog


def instantiate_node(node: DictConfig, where: str, trust: bool = False) -> Any:
    """hydra.utils.instantiate, with a constructor's ValueError/FileNotFoundError turned into a one-line UserError.

    Every `_target_` in the node is checked first, by its text and by the object it resolves to
    (config/resolved_targets.py); trust=True (--trust) skips that. Raises UserError for a refused target."""
    check_node(node, where, trust=trust)
    try:
        return instantiate(node, _convert_="all")
    except Exception as err:
        cause = err.__cause__ or err
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, (ValueError, FileNotFoundError, TypeError)):
            raise UserError(f"{where}: {cause}") from None
        raise


def world_size(cfg: DictConfig) -> int:
    return int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)


def build_tracker(cfg: DictConfig, run_id: str | None, changes: str = "") -> MlflowTracker | None:
    """The MLflow logger (None without one); `changes`: the allowed config changes of this resume, recorded in
    the run (a tag that accumulates over resumes, and config.yaml replaced by the config that runs now)."""
    if cfg.logger.name != "mlflow" or cfg.trainer.fast_dev_run:
        return None
    safe = redact(cfg)
    check_user_tags(safe.tags)
    tags = run_tags(world_size(cfg))
    tags.update(system_tags(tags["normia.git_commit"] if tags["normia.git_commit"] != "unknown" else None))
    tags.update({"normia.experiment": cfg.name, "normia.output_dir": str(cfg.paths.output_dir)})
    overrides = redact_overrides(cfg)  # as typed: an ${oc.env:X} is recorded as such, never resolved
    tags["normia.overrides"] = " ".join(overrides)[:5000]
    tags.update({str(k): str(v) for k, v in (safe.tags or {}).items()})
    texts = {
        "config.yaml": OmegaConf.to_yaml(safe),
        "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(overrides)),
    }
    params = {k: v for k, v in flatten(safe).items() if k != "overrides"}
    return MlflowTracker(
        tracking_uri=resolve_tracking_uri(cfg.logger.tracking_uri),
        experiment_name=cfg.logger.experiment_name,
        run_name=cfg.logger.run_name or default_run_name(cfg.name, str(cfg.paths.output_dir), overrides),
        run_id=run_id,
        tags=tags,
        params=params,
        texts=texts,
        flush_every_s=cfg.logger.flush_every_s,
        system_metrics=cfg.logger.system_metrics,
        appended_tags={CHANGES_TAG: changes} if changes else None,
        dataset=dataset_input(OmegaConf.to_container(safe.data, resolve=True)) if safe.data else None,
        model_input=OmegaConf.to_container(safe.model, resolve=True) if safe.get("model") else None,  # type: ignore[arg-type]
    )


def build_callbacks(
    cfg: DictConfig, tracker: MlflowTracker | None
) -> tuple[list[L.Callback], dict[str, Any]]:
    """User callbacks from cfg.callbacks plus normia's own; returns (all, {role: callback}) for the summary."""
    ckpt_dir = Path(cfg.paths.output_dir) / "checkpoints"
    settings = checkpoint_settings(cfg)
    last = PeriodicCheckpoint(ckpt_dir, settings.every_n_steps, settings.every_minutes, settings.keep_last)
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{step}",
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    roles: dict[str, Any] = {
        "last": last,
        "best": best,
        "state": NormiaState(tracker, OmegaConf.to_yaml(redact(cfg))),
        "stop": GracefulStop(saver=last, tracker=tracker, signals=stop_signals(cfg)),
        "throughput": Throughput(),
        # Checked every log_every_n_steps in one read (no host read per step), as the logged values are.
        "nonfinite": NonFiniteLoss(nonfinite_mode(cfg), every=int(cfg.trainer.log_every_n_steps or 1)),
        "monitor": MonitorCheck(cfg.monitor),
    }
    if tracker is not None and tracker.system_metrics and int(cfg.trainer.num_nodes) > 1:
        from normia.tracking.node_metrics import NodeSystemMetrics

        roles["node_metrics"] = NodeSystemMetrics(
            tracker
        )  # after "state", which opens the run at train start
    energy = energy_callback(cfg.get("energy"), tracker)  # None for energy=off
    if energy is not None:
        roles["energy"] = energy
    user: list[L.Callback] = []
    for name, node in (cfg.callbacks or {}).items():
        if node is None:
            continue
        if name == "rich_progress" and not _rich_ok(cfg):
            continue
        if name == "lr_monitor" and tracker is None:
            continue
        user.append(instantiate_node(node, f"callbacks.{name}"))
    # Callbacks registered for this process by training.callbacks.extra_callbacks (normia search's pruning).
    user.extend(added_callbacks(cfg, tracker))
    if cfg.trainer.enable_progress_bar and not any(isinstance(c, ProgressBar) for c in user):
        # Lightning's default bar (tqdm) redraws every batch, which costs more than a small model's step.
        user.append(TQDMProgressBar(refresh_rate=10))
    # The stateless ones as one callback: Lightning's per-callback cost is paid at every hook of every step.
    grouped = [roles[name] for name in ("stop", "throughput", "nonfinite", "monitor")]
    own = [c for c in roles.values() if not any(c is g for g in grouped)]
    own.insert(own.index(roles["state"]) + 1, CallbackGroup(grouped))
    if cfg.trainer.hang_timeout_s is not None and not cfg.trainer.fast_dev_run:
        # First: its hooks must mark progress before any other callback may block in a collective.
        watchdog = HangWatchdog(
            str(cfg.paths.output_dir), cfg.trainer.hang_timeout_s, cfg.trainer.hang_first_timeout_s, tracker
        )
        roles["watchdog"] = watchdog
        return [watchdog, *user, *own], roles
    return [*user, *own], roles


def stop_signals(cfg: DictConfig) -> tuple[int, ...]:
    """Ctrl-C always; SIGTERM too unless the launcher's SlurmPreemption owns it (launcher=slurm/srun, which also
    takes USR1): a `kill`, a container stop or the scancel of an allocation running launcher=local then saves and
    exits 143 instead of dying with nothing saved. Decided by the callbacks configured, not by SLURM_JOB_ID: a
    local run inside an salloc allocation has that variable and no SlurmPreemption (issue 25)."""
    import signal

    preemption = any(
        str((node or {}).get("_target_", "")).rsplit(".", 1)[-1] == "SlurmPreemption"
        for node in (cfg.get("callbacks") or {}).values()
    )
    return (signal.SIGINT,) if preemption else (signal.SIGINT, signal.SIGTERM)


def _rich_ok(cfg: DictConfig) -> bool:
    if not cfg.trainer.enable_progress_bar:
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def collective_timeout(cfg: DictConfig) -> timedelta:
    """The process group's own timeout: longer than the hang watchdog's limit, so the watchdog (which names the
    rank the others wait for) acts first; the group's timeout stays a backstop (e.g. a watchdog turned off)."""
    t = cfg.trainer
    limit = max(float(t.hang_first_timeout_s), float(t.hang_timeout_s or 0.0))
    return timedelta(seconds=limit + 120.0)


def build_strategy(cfg: DictConfig) -> Any:
    name = cfg.trainer.strategy
    world = world_size(cfg)
    if name == "fsdp":
        from normia.training.sharded_strategy import ShardedCheckpointStrategy

        return ShardedCheckpointStrategy(
            data_parallel_size=world,
            tensor_parallel_size=1,
            timeout=collective_timeout(cfg),
            asynchronous=checkpoint_settings(cfg).asynchronous,
        )
    if name == "ddp" or (name == "auto" and world > 1):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(timeout=collective_timeout(cfg))
    return name


def build_plugins(cfg: DictConfig) -> list[Any]:
    # One-file checkpoints (DDP, one process); trainer=fsdp writes sharded folders itself (sharded_strategy.py).
    plugins: list[Any] = [AtomicCheckpointIO(asynchronous=checkpoint_settings(cfg).asynchronous)]
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_NTASKS"):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # normia's launcher owns requeue (one layer only): Lightning must not requeue on its own.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def build_trainer(cfg: DictConfig, tracker: MlflowTracker | None, callbacks: list[L.Callback]) -> L.Trainer:
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=build_strategy(cfg),
        precision=lightning_precision(t.precision),  # float8: bf16-mixed around torchao's float8 layers
        max_steps=t.max_steps,
        max_epochs=t.max_epochs,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        deterministic=t.deterministic,
        fast_dev_run=t.fast_dev_run,
        overfit_batches=t.overfit_batches,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        profiler=t.profiler,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        logger=tracker if tracker is not None else False,
        callbacks=callbacks,
        plugins=build_plugins(cfg),
        default_root_dir=cfg.paths.output_dir,
    )
