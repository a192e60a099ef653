"""A resumed job must train what the checkpoint's run trained: a changed hyper-parameter is refused (exit 2, the
changed keys listed), unless it only extends the run (trainer.max_steps / trainer.max_epochs), does not affect
training (paths, launcher, logging), or is named in `resume_allow_changes`. Allowed changes are printed and
recorded in the MLflow run, so MLflow, config.yaml and `normia reproduce` agree on what ran. This also makes sure
a requeued Slurm job never resumes a checkpoint written under different hyper-parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normia.config.flatten import flatten
from normia.config.secrets import redact
from normia.errors import UserError

ALLOW_KEY = "resume_allow_changes"
# Changes that do not alter the weights trained (prefix match on dotted keys): where things are written, how the
# job is launched, what is logged and when, validation and checkpoint cadence, callbacks (progress, monitoring,
# a stop), which checkpoint counts as best.
NOT_TRAINING = (
    "resume",
    "overrides",
    ALLOW_KEY,
    "paths.",
    "launcher.",
    "tags.",
    "logger.",
    "callbacks.",
    "monitor",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.profiler",
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.limit_val_batches",
    "trainer.checkpoint_every_n_steps",
    "checkpoint.",  # cadence, retention, async: not what is trained
    "trainer.strategy",  # DDP and FSDP train the same model (sharded checkpoints are consolidated for DDP)
    "trainer.on_nonfinite_loss",  # a diverged run may be resumed with skip
)
# Free-form sections: a key present on one side only is a real change there (elsewhere it is a schema key added or
# removed by another normia version, and is not compared).
FREE_FORM = ("model.", "data.")
EXTENDS_RUN = ("trainer.max_steps", "trainer.max_epochs")
# Restored from the checkpoint's optimizer state (param groups, the scheduler's base LR) whatever the config says:
# allowing them would be a lie. (optim.scheduler/warmup_steps/min_lr_ratio do apply: they may be allowed.)
RESTORED = ("optim.name", "optim.lr", "optim.weight_decay", "optim.betas", "optim.eps", "optim.momentum")
CHANGES_TAG = "normia.resume_changes"
# The global batch is their product: a resume on another number of ranks trains the same steps on the same
# samples (data/sampler.py continues the global order) when the product is unchanged.
GLOBAL_BATCH = ("trainer.devices", "trainer.num_nodes", "data.batch_size", "trainer.accumulate_grad_batches")


def recorded_config(ckpt_path: Path, normia_state: dict[str, Any]) -> DictConfig | None:
    """The config the checkpoint was trained with: embedded in it (normia >= this version), else the config.yaml
    of its run folder, else None (a foreign checkpoint: nothing to compare)."""
    text = normia_state.get("config")
    if text:
        return OmegaConf.create(text)
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    saved = run_dir / "config.yaml"
    return OmegaConf.load(saved) if saved.is_file() else None


def resume_changes(cfg: DictConfig, recorded: DictConfig | None) -> dict[str, tuple[Any, Any]]:
    """{key: (before, now)} of the allowed changes. Raises UserError listing the refused ones, with the fix."""
    if recorded is None:
        return {}
    before, now = flatten(recorded), flatten(redact(cfg))
    changed = {
        k: (before.get(k), now.get(k))
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k) and not k.startswith(NOT_TRAINING) and _comparable(k, before, now)
    }
    allowed = [str(k) for k in (OmegaConf.select(cfg, ALLOW_KEY, default=None) or [])]
    reshaped = [k for k in changed if k in GLOBAL_BATCH]
    batch_note = ""
    if reshaped and not all(_listed(k, allowed) for k in reshaped):
        old, new = _global_batch(before), _global_batch(now)
        if old is not None and old == new:
            allowed += reshaped  # another world size, the same global batch: the same training
        elif old is not None and new is not None:
            batch_note = _global_batch_note(old, new, now)
    restored = [k for k in changed if k.startswith(RESTORED)]
    if restored:
        raise UserError(
            f"resume: {_shown(changed, restored)} changed, but the optimizer state (learning rate, betas, weight "
            "decay) is restored from the checkpoint, so the new value would not apply; resume with the recorded "
            "value, or start a new run (resume=false)"
        )
    refused = [k for k in changed if not k.startswith(EXTENDS_RUN) and not _listed(k, allowed)]
    if refused:
        raise UserError(
            f"resume: {_shown(changed, refused)} changed since the checkpoint was written{batch_note}; resume "
            f"with the recorded values, or allow them with {ALLOW_KEY}=[{','.join(refused)}]"
        )
    return changed


def _global_batch_note(old: int, new: int, now: dict[str, Any]) -> str:
    """Why a changed global batch is refused, and the per-device batch that would keep it."""
    world = _product(now, GLOBAL_BATCH[:2])
    per_device = old / (world * _product(now, GLOBAL_BATCH[3:])) if world else 0
    fix = (
        f"data.batch_size={int(per_device)} keeps it"
        if per_device and per_device == int(per_device)
        else f"a world size that divides {old} keeps it"
    )
    return (
        f" (the global batch, devices x num_nodes x data.batch_size x accumulate_grad_batches, goes from {old} to "
        f"{new}, so the run would not continue the same training: {fix})"
    )


def _product(values: dict[str, Any], keys: tuple[str, ...]) -> int:
    out = 1
    for key in keys:
        out *= int(values.get(key) or 1)
    return out


def _global_batch(values: dict[str, Any]) -> int | None:
    """Samples per optimizer step, or None when the data has no batch_size key."""
    if not isinstance(values.get("data.batch_size"), int):
        return None
    return _product(values, GLOBAL_BATCH)


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items())


def _comparable(key: str, before: dict[str, Any], now: dict[str, Any]) -> bool:
    return (key in before and key in now) or key.startswith(FREE_FORM)


def _listed(key: str, allowed: list[str]) -> bool:
    return any(key == a or key.startswith(a.rstrip(".") + ".") for a in allowed)


def _shown(changed: dict[str, tuple[Any, Any]], keys: list[str]) -> str:
    return ", ".join(f"{k} ({changed[k][0]} -> {changed[k][1]})" for k in keys)
