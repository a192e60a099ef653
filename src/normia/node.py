"""This process's node, by the name Slurm gives it: what an exclusion (`--exclude`), a node id in MLflow's system
metrics, and the hang watchdog's reports need. Import-light: the hang watchdog's thread calls it."""

from __future__ import annotations

import os
import socket


def node_name() -> str:
    """SLURMD_NODENAME in a Slurm job (the name sinfo and --exclude use), else the host name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def nodes_of_ranks(world: int) -> list[str]:
    """Every rank's node, by rank: one object all-gather over the default process group (call it once, at setup,
    on every rank); [] for one process or without a process group."""
    import torch.distributed as dist

    if world < 2 or not dist.is_available() or not dist.is_initialized():
        return []
    nodes: list[object] = [None] * world
    dist.all_gather_object(nodes, node_name())
    return [str(n) for n in nodes]
