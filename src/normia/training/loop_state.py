"""Fix-ups of Lightning's loop state in a checkpoint before Lightning restores it.

A checkpoint written at the end of an epoch (validation at epoch end, after the epoch was counted as completed)
keeps the finished epoch's batch counters. Lightning 2.6 reads them as the position inside the NEXT epoch, finds it
already at its end, runs it empty, and trains the following epoch instead: one epoch too many and another data
order than an uninterrupted run. The counters of a completed epoch are reset here, so the next epoch starts at its
first batch, as it does without the interruption."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

CURRENT_COUNTERS = (
    "epoch_loop.batch_progress",
    "epoch_loop.scheduler_progress",
)


def start_next_epoch_if_completed(checkpoint: dict[str, Any]) -> bool:
    """Reset the per-epoch counters when the checkpoint's epoch is complete; True if it did."""
    fit = (checkpoint.get("loops") or {}).get("fit_loop")
    if not fit:
        return False
    epochs = (fit.get("epoch_progress") or {}).get("current") or {}
    batches = fit.get("epoch_loop.batch_progress") or {}
    finished = epochs.get("completed") is not None and epochs.get("completed") == epochs.get("ready")
    if not (finished and batches.get("is_last_batch") and batches.get("current", {}).get("completed", 0) > 0):
        return False
    for key in CURRENT_COUNTERS:
        _zero(fit.get(key, {}).get("current"))
    batches["is_last_batch"] = False
    optim = fit.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {})
    for part in optim.values():
        _zero(part.get("current"))
    return True


def _zero(counters: dict[str, int] | None) -> None:
    for name in counters or {}:
        counters[name] = 0


def replay_iterator_draws(trainer: Any) -> None:
    """After restoring the RNG at an epoch-boundary resume: in an uninterrupted run, the new epoch's DataLoader
    iterator is created after on_train_epoch_start and draws its base seed from the global torch RNG; a resumed
    Lightning run created that iterator earlier. Draw the same way once per such loader, so the stream (dropout,
    augmentation) continues exactly as without the interruption."""
    combined = trainer.fit_loop._combined_loader  # private: guarded by tests/test_private_apis.py
    for loader in getattr(combined, "flattened", []) or []:
        if not isinstance(loader, DataLoader) or loader.generator is not None:
            continue
        if loader.persistent_workers and loader.num_workers > 0:
            continue  # its iterator is reused across epochs: no draw
        torch.empty((), dtype=torch.int64).random_()
