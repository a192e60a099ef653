"""Synthetic data of any shape and size, for benchmarks and for measuring what the real loaders cost.

Three kinds, chosen by the arguments: tokens (vocab_size set: inputs and next-token targets of shape input_shape),
classification (num_classes set: float inputs, integer labels) and regression (float inputs and float targets of
target_shape). Sample i is drawn from a generator seeded by (seed, i), so the data are the same on every machine and
rank; `in_memory=False` draws each sample when it is read, so a dataset of 10^9 samples costs no memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from normia.data.datamodule import ResumableDataModule
from normia.errors import UserError


class SyntheticDataset(Dataset):
    def __init__(
        self,
        num_samples: int,
        input_shape: Sequence[int],
        target_shape: Sequence[int] = (),
        vocab_size: int | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        in_memory: bool = True,
    ) -> None:
        self.num_samples = int(num_samples)
        self.input_shape, self.target_shape = tuple(input_shape), tuple(target_shape)
        self.vocab_size, self.num_classes, self.seed = vocab_size, num_classes, seed
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if in_memory:
            self._cache = [self._draw(i) for i in range(self.num_samples)]

    def _draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        if self.vocab_size:
            tokens = rng.integers(
                0, self.vocab_size, size=(int(np.prod(self.input_shape)) + 1,), dtype=np.int64
            )
            return torch.from_numpy(tokens[:-1].reshape(self.input_shape)), torch.from_numpy(
                tokens[1:].reshape(self.input_shape)
            )
        x = torch.from_numpy(rng.standard_normal(self.input_shape, dtype=np.float32))
        if self.num_classes:
            return x, torch.tensor(int(rng.integers(0, self.num_classes)), dtype=torch.int64)
        return x, torch.from_numpy(rng.standard_normal(self.target_shape, dtype=np.float32))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        return self._cache[index] if self._cache is not None else self._draw(index)


class SyntheticDataModule(ResumableDataModule):
    """Synthetic train/val sets; see the module docstring for the kinds of data."""

    def __init__(
        self,
        input_shape: Sequence[int],
        target_shape: Sequence[int] = (),
        vocab_size: int | None = None,
        num_classes: int | None = None,
        num_samples: int = 1024,
        num_val_samples: int = 128,
        in_memory: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if vocab_size and num_classes:
            raise UserError("set data.vocab_size (tokens) or data.num_classes (classification), not both")
        if num_samples < 1 or num_val_samples < 1:
            raise UserError("data.num_samples and data.num_val_samples must be >= 1")
        self.kwargs = {
            "input_shape": list(input_shape),
            "target_shape": list(target_shape),
            "vocab_size": vocab_size,
            "num_classes": num_classes,
            "in_memory": in_memory,
        }
        self.num_samples, self.num_val_samples = num_samples, num_val_samples

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set = SyntheticDataset(self.num_samples, seed=self.seed, **self.kwargs)
        self.val_set = SyntheticDataset(self.num_val_samples, seed=self.seed + 1, **self.kwargs)
