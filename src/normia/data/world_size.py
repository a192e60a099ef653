"""The data checked against the world size it will be split over, once, before any rank starts (issue 25 D).

Each rank of a job checks its own share when its loaders are built (data/datamodule.py), but that is after the
ranks started, loaded the model and, on a cluster, waited in the queue: an 8-rank job over 40 training samples with
data.batch_size=16 failed minutes in, printed by every rank, while the dry run for it had passed. The same numbers
are computed here from one setup of the data module in the launching process: training samples per rank (what a
rank's ResumableSampler gets: an equal share, the remainder dropped) against the batch size, and at least one
validation sample per rank (EvalSampler gives each sample to exactly one rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataPerRank:
    """Sizes of the training and validation splits and the world size they are divided over."""

    train: int
    val: int
    batch_size: int
    world_size: int

    @property
    def train_per_rank(self) -> int:
        return self.train // self.world_size

    def problem(self, ranks: str) -> str | None:
        """The one-line refusal when a rank would get too little data; None when every rank gets enough.
        `ranks` describes the world size for the message (e.g. "2 node(s) x 4 GPU(s)")."""
        if self.train_per_rank < self.batch_size:
            return (
                f"{self.train} training samples over {self.world_size} ranks ({ranks}) is {self.train_per_rank} per "
                f"rank, fewer than data.batch_size={self.batch_size}: lower data.batch_size to "
                f"{max(1, self.train_per_rank)} or less, use fewer ranks, or add data"
            )
        if self.val < self.world_size:
            return (
                f"{self.val} validation sample(s) for {self.world_size} ranks ({ranks}): each rank needs at least "
                "one; use more validation data or fewer ranks"
            )
        return None

    def describe(self) -> str:
        return (
            f"{self.train} training samples, {self.train_per_rank} per rank x {self.world_size} rank(s) "
            f"(batch {self.batch_size}), {self.val} validation"
        )


def measure(datamodule: Any, world_size: int) -> DataPerRank:
    """Set the data module up for fitting (reads the data) and return its split sizes."""
    datamodule.setup("fit")
    train = len(datamodule.train_set) if datamodule.train_set is not None else 0
    val = len(datamodule.val_set) if datamodule.val_set is not None else 0
    return DataPerRank(train, val, int(datamodule.batch_size), world_size)
