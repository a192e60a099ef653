"""Tearing the default process group down before the interpreter does.

A gloo group left to interpreter finalization can abort a finished process (SIGABRT, "terminate called without an
active exception": its worker threads release tensors after the interpreter is gone; pytorch/pytorch#190489): seen
as a local rank leaving by an exception with exit -6, and as a COMPLETED Slurm task turned failed. Lightning does not
destroy the group it made."""

from __future__ import annotations

import contextlib


def close_process_group(only_gloo: bool = False) -> None:
    """Destroy the default process group if there is one (only a gloo one with `only_gloo`: destroying an NCCL group
    whose peer died can block, which an exit handler must not risk). Never raises: the exit code already says what
    happened, a failing teardown must not replace it."""
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        if not (dist.is_available() and dist.is_initialized()):
            return
        if only_gloo and dist.get_backend() != "gloo":
            return
        dist.destroy_process_group()


def close_gloo_group_at_exit() -> None:
    """An exit handler (atexit), while the interpreter is still whole."""
    close_process_group(only_gloo=True)
