"""Checks that cost seconds now and save a failed run later: output folder, MLflow store, requested devices.

Imports stay inside the functions: launch/slurm.py imports this module for every submission and dry run, and
training/outputs.py brings Lightning (seconds)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from normia.errors import UserError

if TYPE_CHECKING:
    from normia.launch.spec import SlurmLauncherCfg


def preflight_local(cfg: DictConfig) -> None:
    from normia.tracking.tags import check_user_tags
    from normia.tracking.uri import check_reachable, resolve_tracking_uri
    from normia.training.outputs import check_writable
    from normia.training.settings_check import check_settings_here

    _check_target_check_mode()
    check_writable(cfg.paths.output_dir)
    if cfg.logger.name == "mlflow" and not cfg.trainer.fast_dev_run:
        check_reachable(resolve_tracking_uri(cfg.logger.tracking_uri))
        check_user_tags(cfg.tags)
    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("gpu", "cuda"):
        import torch

        available = torch.cuda.device_count()
        if available < int(cfg.trainer.devices):
            raise UserError(
                f"trainer.accelerator={accelerator} with trainer.devices={cfg.trainer.devices}, but this machine has "
                f"{available} CUDA GPU(s); use trainer=cpu here, or launcher=slurm to run on GPU nodes"
            )
    if cfg.trainer.precision == "float8":
        check_float8_here(accelerator, int(cfg.trainer.devices))
    check_settings_here(cfg)


def check_float8_here(accelerator: str, devices: int) -> None:
    """trainer.precision=float8 on this machine: every GPU the run uses must have float8 GEMMs (compute capability
    8.9+, or an AMD MI300/MI350) and torchao must be installed. Raises UserError (one line, the fix) otherwise."""
    from normia.training.float8 import float8_unsupported_reason, torchao_missing_reason

    off_gpu = accelerator if accelerator in ("cpu", "mps") else None
    if off_gpu is None:
        import torch

        # accelerator=auto on a machine without a GPU: Lightning would pick the CPU
        off_gpu = None if torch.cuda.is_available() else "cpu"
    if off_gpu is not None:
        raise UserError(str(float8_unsupported_reason(off_gpu)))
    count = torch.cuda.device_count()
    for index in range(count if devices < 1 else min(devices, count)):  # devices=-1: all of them
        reason = float8_unsupported_reason(index)
        if reason:
            raise UserError(reason)
    reason = torchao_missing_reason()
    if reason:
        raise UserError(reason)


def check_float8_partition(cfg: DictConfig, spec: SlurmLauncherCfg, partition: str | None) -> None:
    """trainer.precision=float8 submitted to Slurm (launcher=slurm|austral, dry runs too): refused when the preset
    says the partition's GPUs (launcher.partitions.<name>.gpu) have no float8, or when the ranks run this Python
    and it lacks torchao. A partition of unknown GPU model passes: the job checks its own GPU on the node."""
    if cfg.trainer.precision != "float8":
        return
    from normia.training.float8 import partition_reason, torchao_missing_reason

    name = partition or spec.partition
    gpus = {key: getattr(limits, "gpu", None) for key, limits in spec.partitions.items()}
    reason = partition_reason(name, spec.name, gpus) if name else None
    if reason:
        raise UserError(reason)
    from normia.launch.python_env import runs_this_python

    if runs_this_python(spec):
        reason = torchao_missing_reason(f" in {sys.executable}, the Python the ranks run")
        if reason:
            raise UserError(reason)


def _check_target_check_mode() -> None:
    """A bad NORMIA_CHECK_TARGETS is refused before anything is written, for every model (otherwise it surfaces
    as a traceback at the first cross-entropy call, or never for models that make none). normia.ops is imported
    only when the variable is set: it costs a run that does not use it ~0.4 s."""
    if not os.environ.get("NORMIA_CHECK_TARGETS"):
        return
    from normia.ops._deferred import mode

    try:
        mode()
    except ValueError as err:
        raise UserError(str(err)) from None
