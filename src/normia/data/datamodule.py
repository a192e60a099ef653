"""A LightningDataModule base whose training position travels in the checkpoint.

Lightning 2.6 saves `datamodule.state_dict()` in every checkpoint and calls `load_state_dict()` on resume before it
asks for the dataloaders. The position is counted in `on_before_batch_transfer`, which Lightning calls for a training
batch just before the step that uses it. Counting in the loader or the sampler instead would include the batches that
Lightning's fetcher (one batch ahead) and the loader's workers have prefetched but not trained on, and a resume would
skip them.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from normia.data.sampler import EvalSampler, ResumableSampler
from normia.errors import UserError


def batch_length(batch: Any) -> int:
    """Number of samples in a batch given as a tensor or a tuple/list/dict of tensors."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    if isinstance(batch, (tuple, list)) and batch:
        return batch_length(batch[0])
    if isinstance(batch, dict) and batch:
        return batch_length(next(iter(batch.values())))
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__}")


def _already_batched(batch: Any) -> Any:
    """collate_fn for datasets whose __getitems__ returns a whole batch of tensors."""
    return batch


class _BatchReader(Dataset):
    """Reads a whole batch for a list of indices, as DataLoader's own batching would (the dataset's __getitems__,
    which in normia returns a batch, or default_collate of its items): lets EvalSampler choose each batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, indices: list[int]) -> Any:
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(indices)
        return default_collate([self.dataset[i] for i in indices])


class _SamplerStateLoader(DataLoader):
    """A DataLoader that exposes its sampler's position (Lightning's stateful-loader protocol), so Lightning sees the
    loader as resumable; the position itself is counted by ResumableDataModule, where batches are consumed."""

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()  # type: ignore[union-attr]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)  # type: ignore[union-attr]


class ResumableDataModule(L.LightningDataModule):
    """Subclasses build `self.train_set` / `self.val_set` in setup(); this class makes their loaders resumable.

    batch_size is per process: W processes of batch B see, step by step, the same samples as one process of W x B.
    """

    def __init__(self, batch_size: int, num_workers: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size={batch_size} must be >= 1")
        if num_workers < 0:
            raise UserError(f"data.num_workers={num_workers} must be >= 0")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self._sampler: ResumableSampler | None = None
        self._pending_state: dict[str, Any] | None = None

    def _loader(self, dataset: Dataset, sampler: Any = None, drop_last: bool = False) -> DataLoader:
        loader_class = _SamplerStateLoader if isinstance(sampler, ResumableSampler) else DataLoader
        return loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_already_batched if hasattr(dataset, "__getitems__") else None,
        )

    def _overfitting(self) -> bool:
        """debug=overfit: Lightning replaces every loader's sampler with a SequentialSampler of single indices, which
        neither the resumable training order nor the batch-level EvalSampler survive; plain loaders serve instead."""
        trainer = getattr(self, "trainer", None)
        return bool(trainer is not None and trainer.overfit_batches)

    def _plain_loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_already_batched if hasattr(dataset, "__getitems__") else None,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        if self._overfitting():
            return self._plain_loader(self.train_set)
        if self._sampler is None:
            self._sampler = ResumableSampler(len(self.train_set), shuffle=self.shuffle, seed=self.seed)  # type: ignore[arg-type]
            if self._pending_state is not None:
                self._sampler.load_state_dict(self._pending_state)
                self._pending_state = None
        if len(self._sampler) < self.batch_size:
            raise UserError(
                f"{len(self._sampler)} training samples per process, fewer than data.batch_size={self.batch_size}: "
                "lower the batch size or add data"
            )
        return self._loader(self.train_set, sampler=self._sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Each validation sample on exactly one rank, as many batches on every rank (see EvalSampler), so the
        metrics are those of one process whatever the number of ranks."""
        if self.val_set is None:
            self.setup("validate")
        assert self.val_set is not None
        if self._overfitting():
            return self._plain_loader(self.val_set)
        sampler = EvalSampler(len(self.val_set), self.batch_size)  # type: ignore[arg-type]
        if sampler.total_size < sampler.num_replicas:
            raise UserError(
                f"only {sampler.total_size} validation sample(s) for {sampler.num_replicas} processes: each process "
                "needs at least one; use more validation data or fewer processes"
            )
        return DataLoader(
            _BatchReader(self.val_set),
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_already_batched,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training and self._sampler is not None:
            self._sampler.advance(batch_length(batch))
        return batch

    def state_dict(self) -> dict[str, Any]:
        if self._sampler is None:
            return {"sampler": self._pending_state} if self._pending_state else {}
        return {"sampler": self._sampler.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("sampler")
        if not state:
            return
        if self._sampler is None:
            self._pending_state = state
        else:
            self._sampler.load_state_dict(state)
