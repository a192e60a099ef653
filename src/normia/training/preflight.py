"""Checks that cost seconds now and save a failed run later: output folder, MLflow store, requested devices."""

from __future__ import annotations

from omegaconf import DictConfig

from normia.errors import UserError
from normia.tracking.tags import check_user_tags
from normia.tracking.uri import check_reachable, resolve_tracking_uri
from normia.training.outputs import check_writable


def preflight_local(cfg: DictConfig) -> None:
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
    if cfg.trainer.strategy == "fsdp" and int(cfg.trainer.devices) * int(cfg.trainer.num_nodes) < 2:
        raise UserError("trainer.strategy=fsdp needs at least 2 processes; set trainer.devices=2 or more")
