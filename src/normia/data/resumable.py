"""Data order that survives resume and changes of world size.

ShardedSampler draws one permutation per (seed, epoch), the same on every rank, and gives rank r the indices
r, r+W, r+2W, ...: the union of the ranks' batches at step k is the same set of samples as one process's batch of
W times the size, so 1 process and W processes follow the same loss curve. ResumableLoader records how many batches
were consumed in the epoch; Lightning saves that in the checkpoint and a resumed run skips exactly those samples
(neither repeating nor skipping data mid-epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ShardedSampler(DistributedSampler):
    """A DistributedSampler (so Lightning keeps it) that can start an epoch after `skip` of its own indices."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int, shuffle: bool = True, seed: int = 0):
        super().__init__(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class ResumableLoader(DataLoader):
    """A DataLoader with state_dict()/load_state_dict() (Lightning's stateful-loader protocol)."""

    def __init__(self, dataset: Dataset, sampler: ShardedSampler, batch_size: int, **kwargs: Any):
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.consumed = 0  # batches handed out in the current epoch

    def __iter__(self) -> Iterator[Any]:
        start = self.consumed if self.sampler.skip else 0
        self.consumed = start
        for batch in super().__iter__():
            self.consumed += 1
            yield batch
        self.consumed = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": int(self.consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(int(state["epoch"]))
        self.consumed = int(state["batches"])
        self.sampler.skip = self.consumed * int(self.batch_size)


def rank_and_world(datamodule: Any) -> tuple[int, int]:
    """(global rank, world size) of the trainer a LightningDataModule is attached to; (0, 1) without one."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)
