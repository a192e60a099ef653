"""A deterministic, rank-aware sampler that can resume in the middle of an epoch.

Why not torch's DistributedSampler: it cannot start mid-epoch, so a job resumed from a mid-epoch checkpoint would see
the start of the epoch again. This sampler shards one seeded permutation per epoch across ranks by interleaving
(rank r takes positions r, r + W, r + 2W, ...), so the first `c * W` samples of the global order are exactly those
consumed after every rank took `c`. Its position is therefore one number, the global count of consumed samples, and a
resume (even with another world size) skips exactly those samples: nothing repeated, nothing skipped.

It subclasses DistributedSampler only so that Lightning, which replaces any other sampler under DDP, keeps it.
Rank and world size are read from torch.distributed when the iteration starts, not at construction (the process group
does not exist yet when the data module is built).

Validation uses EvalSampler (at the end): no shuffling, no position, and above all no padding, so that validation
metrics are those of one process whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _LazyRankSampler(DistributedSampler):
    """DistributedSampler's num_replicas and rank, read when asked (the process group may start after the sampler is
    built) unless given explicitly as self._rank / self._world_size."""

    _rank: int | None
    _world_size: int | None

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return _rank_and_world(self._rank, self._world_size)[1]

    @property
    def rank(self) -> int:  # type: ignore[override]
        return _rank_and_world(self._rank, self._world_size)[0]


class ResumableSampler(_LazyRankSampler):
    """Indices of one epoch for this rank, shuffled by (seed, epoch), starting after the samples already consumed.

    Consumption is reported by the data module (`advance`) when a batch reaches the training step, not when the loader
    prefetches it, so what the checkpoint records is what the model actually trained on.
    """

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        # DistributedSampler.__init__ needs an initialised process group; everything it sets is defined here instead.
        if num_samples < 1:
            raise ValueError(f"ResumableSampler needs at least one sample, got {num_samples}")
        self.dataset_size = int(num_samples)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self._rank = rank
        self._world_size = world_size
        self.epoch = 0
        self.consumed = 0  # global samples of `self.epoch` already trained on (all ranks together)
        self._resume: tuple[int, int] | None = None  # (epoch, consumed) loaded from a checkpoint, until used

    # -- the parts of DistributedSampler's interface that Lightning and torch read --
    @property
    def total_size(self) -> int:  # type: ignore[override]
        world = self.num_replicas
        if self.drop_last:
            return (self.dataset_size // world) * world
        return -(-self.dataset_size // world) * world

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        return self.total_size // self.num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start; a new epoch starts from its beginning unless it is the resumed one."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.consumed = 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global order of one epoch, padded (by wrapping) or cut to a multiple of the world size."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        total = self.total_size
        if total > len(order):
            order = np.concatenate([order, order[: total - len(order)]])
        return order[:total]

    def __iter__(self) -> Iterator[int]:
        # A generator: this body runs at the first next(), after Lightning has called set_epoch and load_state_dict.
        if self._resume is not None:
            epoch, consumed = self._resume
            self._resume = None
            if epoch == self.epoch:
                self.consumed = consumed
        else:
            self.consumed = 0
        rank, world = _rank_and_world(self._rank, self._world_size)
        order = self.epoch_order(self.epoch)
        start = self.consumed - self.consumed % world  # a position every rank has reached
        for position in range(start + rank, len(order), world):
            yield int(order[position])

    def advance(self, local_batch_size: int) -> None:
        """Record that this rank trained on a batch; every rank does the same, so the global count grows by W x B."""
        self.consumed += int(local_batch_size) * self.num_replicas

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": self.consumed,
            "seed": self.seed,
            "dataset_size": self.dataset_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("dataset_size", self.dataset_size)) != self.dataset_size:
            # Another dataset: its positions mean nothing here; start the epoch over rather than skip arbitrary data.
            return
        self.epoch = int(state["epoch"])
        self._resume = (int(state["epoch"]), int(state["consumed"]))


def balanced_sizes(total: int, parts: int) -> list[int]:
    """`parts` sizes that add up to `total` and differ by at most one (the larger ones first)."""
    base, extra = divmod(int(total), int(parts))
    return [base + (i < extra) for i in range(parts)]


def eval_batch_count(num_samples: int, batch_size: int, world: int) -> int:
    """Batches per rank: enough for batches of at most `batch_size`, but never more than the samples allow if every
    rank must get at least one sample per batch (which only caps it when batch_size is 1)."""
    return max(1, min(-(-num_samples // (world * batch_size)), num_samples // world))


def eval_batches(num_samples: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """This rank's validation batches: each sample on exactly one rank, no padding, the same number of batches on
    every rank (FSDP gathers parameters in every forward, so one extra batch on one rank would hang the others).

    The data is cut into equal global batches, each cut into equal per-rank pieces; all pieces are contiguous.
    """
    if num_samples < world:
        raise ValueError(f"{num_samples} samples cannot give each of {world} ranks at least one")
    batches = []
    start = 0
    for global_size in balanced_sizes(num_samples, eval_batch_count(num_samples, batch_size, world)):
        pieces = balanced_sizes(global_size, world)
        begin = start + sum(pieces[:rank])
        batches.append(list(range(begin, begin + pieces[rank])))
        start += global_size
    return batches


class EvalSampler(_LazyRankSampler):
    """Yields this rank's validation batches as index lists (see `eval_batches`), for a DataLoader(batch_size=None).

    torch's DistributedSampler, which Lightning puts on a validation loader under DDP, pads the data by repeating
    samples so that every rank gets as many; the repeated samples then count twice in the metrics, which therefore
    depend on the number of ranks. Here every sample is seen once. Subclassing DistributedSampler keeps Lightning from
    replacing it; rank and world size are read when it is used, after the process group exists.
    """

    def __init__(
        self, num_samples: int, batch_size: int, rank: int | None = None, world_size: int | None = None
    ) -> None:
        if num_samples < 1 or batch_size < 1:
            raise ValueError(
                f"EvalSampler needs samples and a batch size >= 1, got {num_samples}, {batch_size}"
            )
        self.dataset_size = int(num_samples)
        self.batch_size = int(batch_size)
        self._rank = rank
        self._world_size = world_size
        self.shuffle = False
        self.drop_last = False
        self.seed = 0
        self.epoch = 0

    @property
    def total_size(self) -> int:  # type: ignore[override]
        return self.dataset_size

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        """Samples on this rank (not padded)."""
        return sum(len(batch) for batch in self.batches())

    def batches(self) -> list[list[int]]:
        rank, world = _rank_and_world(self._rank, self._world_size)
        return eval_batches(self.dataset_size, self.batch_size, rank, world)

    def __len__(self) -> int:
        """Batches on this rank, the same on every rank."""
        return eval_batch_count(self.dataset_size, self.batch_size, self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        return iter(self.batches())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)  # the order does not depend on it
