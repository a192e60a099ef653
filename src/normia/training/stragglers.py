"""Stragglers: a rank whose own work is slower than the others' (a slow disk or file system, a busy CPU, a data
loader that cannot keep up).

In data-parallel training every rank waits for the slowest at each collective, so wall-clock step times are the
same everywhere and hide the culprit; and the step itself holds collectives (DDP broadcasts buffers in forward and
all-reduces gradients in backward). Each rank therefore times the part of each step cycle in which no collective can
make it wait for the others: from the end of one step to the start of the next (fetching and moving the batch, the
host-side work of callbacks). At logging steps only, one small all-gather collects every rank's mean; a rank above
THRESHOLD x the median for PATIENCE intervals in a row gets one warning line naming rank and host, and an MLflow tag.
Not covered yet: a GPU that computes slowly (its time is inside the step; it needs CUDA events around forward).
Inspired by NVIDIA's resiliency extension's straggler scores (relative to the median of the ranks).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from normia.node import nodes_of_ranks

THRESHOLD = 1.2
PATIENCE = 3


@dataclass
class OwnTime:
    """This rank's seconds between steps (end of one step to the start of the next), over a logging interval."""

    total_s: float = 0.0
    steps: int = 0
    _since: float | None = None

    def step_ends(self, now: float) -> None:
        self._since = now

    def step_starts(self, now: float) -> None:
        if self._since is not None:
            self.total_s += now - self._since
            self.steps += 1
            self._since = None

    def take(self) -> float | None:
        mean = self.total_s / self.steps if self.steps else None
        self.total_s, self.steps = 0.0, 0
        return mean


@dataclass
class StragglerWatch:
    """Judges the gathered per-rank means; keeps how many intervals in a row each rank was slow."""

    threshold: float = THRESHOLD
    patience: int = PATIENCE
    streak: dict[int, int] = field(default_factory=dict)
    sums: dict[str, list[float]] = field(default_factory=dict)  # host -> [sum of means, count]
    warned: set[int] = field(default_factory=set)

    def judge(self, means: list[float], hosts: list[str]) -> list[str]:
        """Warning lines for ranks slow for `patience` intervals in a row (each rank warned once per slow streak).

        Args:
            means: each rank's own seconds per step in this interval (index = rank).
            hosts: each rank's host name.
        """
        for rank, mean in enumerate(means):
            acc = self.sums.setdefault(hosts[rank], [0.0, 0.0])
            acc[0] += mean
            acc[1] += 1
        median = statistics.median(means)
        lines = []
        for rank, mean in enumerate(means):
            slow = median > 0 and mean > self.threshold * median
            self.streak[rank] = self.streak.get(rank, 0) + 1 if slow else 0
            if not slow:
                self.warned.discard(rank)
            if self.streak[rank] >= self.patience and rank not in self.warned:
                self.warned.add(rank)
                lines.append(
                    f"straggler: rank {rank} on {hosts[rank]} takes {mean / median:.2f}x the median time between steps "
                    f"({mean * 1e3:.1f} ms vs {median * 1e3:.1f} ms: loading the batch, host work) for "
                    f"{self.streak[rank]} logging intervals; every rank waits for it at each all-reduce"
                )
        return lines

    def per_host(self) -> dict[str, float]:
        """Mean seconds between steps of each host's ranks, over the run."""
        return {host: total / count for host, (total, count) in sorted(self.sums.items()) if count}


def gather_means(trainer: Any, device: Any, mean: float | None) -> list[float] | None:
    """Every rank's mean (one all-gather, at logging steps only); None on one process or with no step timed."""
    if trainer.world_size <= 1:
        return None
    import torch
    import torch.distributed as dist

    value = torch.tensor([-1.0 if mean is None else mean], dtype=torch.float64, device=device)
    parts = [torch.empty_like(value) for _ in range(trainer.world_size)]
    dist.all_gather(parts, value)
    gathered = [float(p.item()) for p in parts]
    return None if any(v < 0 for v in gathered) else gathered


def gather_hosts(trainer: Any) -> list[str]:
    """Each rank's node (normia.node.node_name), once (an object all-gather)."""
    return nodes_of_ranks(trainer.world_size)
