"""scikit-learn's 8x8 handwritten digits: real data that ships with a dependency, so the quickstart needs no download."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from normia.data.datamodule import ResumableDataModule
from normia.data.facts import RecordsPredictState, share_with_model, with_predict_state
from normia.errors import UserError


def load_digits_arrays(flatten: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to [0, 1] as float32 (N, 64) or (N, 1, 8, 8), and int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    x = images.reshape(len(images), -1) if flatten else images[:, None, :, :]
    return x, bunch.target.astype(np.int64)


class DigitsDataModule(RecordsPredictState, ResumableDataModule):
    """A fixed, seeded train/validation split of the 1,797 digits (the split never depends on the run's seed);
    the training order is resumable mid-epoch and identical for 1 process of batch W*B and W processes of B.

    Class i is the digit i: `classes` is ['0', ..., '9']. Pixels are scaled to [0, 1] (sklearn's 0..16 over 16).
    """

    classes: tuple[str, ...] = tuple(str(d) for d in range(10))

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        flatten: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"data.val_fraction={val_fraction} must be between 0 and 1 (exclusive)")
        self.val_fraction = val_fraction
        self.flatten = flatten
        self.majority_class: int | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._load()
        share_with_model(self, majority_class=self.majority_class)

    def _load(self) -> None:
        x, y = load_digits_arrays(self.flatten)
        order = np.random.default_rng(self.seed).permutation(len(x))
        n_val = round(len(x) * self.val_fraction)
        val_idx, train_idx = order[:n_val], order[n_val:]
        self.majority_class = int(np.bincount(y[train_idx], minlength=10).argmax())
        self.train_set = TensorDataset(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx]))
        self.val_set = TensorDataset(torch.from_numpy(x[val_idx]), torch.from_numpy(y[val_idx]))

    def predict_state(self) -> dict[str, object]:
        """What normia predict needs: the class names in index order and the input layout."""
        return {
            "kind": "classify",
            "input": "digits",
            "classes": list(self.classes),
            "flatten": bool(self.flatten),
            "image_shape": [1, 8, 8],
            "pixel_max": 16.0,
        }

    def state_dict(self) -> dict[str, object]:
        """The loader position (resume) and the prediction state, both saved in every checkpoint by Lightning."""
        return with_predict_state(super().state_dict(), self.predict_state())
