"""The `checkpoint` config node (configs/checkpoint/*.yaml), checked where every job is validated (before a Slurm
submission too) and read by training/build.py. Import-light: no torch, no Lightning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from normia.config.schema import CHECKPOINT_DEFAULTS
from normia.errors import UserError, did_you_mean


@dataclass(frozen=True)
class CheckpointSettings:
    """every_n_steps: optimizer steps between saves, or None. every_minutes: wall-clock minutes between saves, or
    None. keep_last: periodic checkpoints kept (>= 1). asynchronous: write in the background."""

    every_n_steps: int | None
    every_minutes: float | None
    keep_last: int
    asynchronous: bool


def checkpoint_settings(cfg: Any) -> CheckpointSettings:
    """The run's checkpoint settings; `trainer.checkpoint_every_n_steps` (earlier versions' key, still in their
    recorded configs) stands for checkpoint.every_n_steps when that is not set. Raises UserError for an unknown key
    or a value out of range, naming the key and what it accepts."""
    node = dict(CHECKPOINT_DEFAULTS)
    given = cfg.get("checkpoint") if hasattr(cfg, "get") else None
    for key, value in dict(given or {}).items():
        if key not in CHECKPOINT_DEFAULTS:
            raise UserError(f"unknown key checkpoint.{key}{did_you_mean(str(key), CHECKPOINT_DEFAULTS)}")
        node[key] = value
    steps = node["every_n_steps"]
    if steps is None:
        trainer = cfg.get("trainer") if hasattr(cfg, "get") else None
        steps = trainer.get("checkpoint_every_n_steps") if trainer is not None else None
    minutes = node["every_minutes"]
    keep = node["keep_last"]
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise UserError(
            f"checkpoint.every_n_steps={steps}: a whole number of optimizer steps, 1 or more (null: none)"
        )
    if minutes is not None and (
        isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0
    ):
        raise UserError(
            f"checkpoint.every_minutes={minutes}: a positive number of minutes (null: no time cadence)"
        )
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UserError(
            f"checkpoint.keep_last={keep}: how many periodic checkpoints stay on disk, 1 or more (the newest "
            "complete one is always kept)"
        )
    if not isinstance(node["async"], bool):
        raise UserError(f"checkpoint.async={node['async']}: true or false")
    return CheckpointSettings(
        every_n_steps=steps,
        every_minutes=float(minutes) if minutes is not None else None,
        keep_last=keep,
        asynchronous=node["async"],
    )
