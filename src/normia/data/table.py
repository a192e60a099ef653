"""Rows of a CSV/Parquet table as (features, target) for regression or classification.

The split is a seeded shuffle of rows (data.seed, independent of the run seed); features, and the target for
regression, are standardised with train-split statistics only. Class labels may be any strings or numbers; they are
numbered in sorted order and kept in `classes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from normia.data.datamodule import ResumableDataModule
from normia.data.splits import Standardizer, check_fraction, shuffled_split
from normia.data.table_reader import numeric_columns, read_table, require_columns
from normia.errors import UserError, did_you_mean

TASKS = ("regression", "classification")


class TableDataModule(ResumableDataModule):
    """Feature columns -> one target column. Batches: (float32 features (B, F), float32 (B, 1) or int64 (B,) target)."""

    def __init__(
        self,
        path: str,
        target: str,
        features: Sequence[str] | None = None,
        task: str = "regression",
        val_fraction: float = 0.2,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        sep: str | None = None,
        decimal: str | None = None,
        encoding: str = "utf-8-sig",
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if task not in TASKS:
            raise UserError(f"unknown data.task '{task}'{did_you_mean(task, TASKS)}")
        self.path, self.target, self.task = path, target, task
        self.features = list(features) if features else None
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.read_options = {"sep": sep, "decimal": decimal, "encoding": encoding}
        self.feature_scaler: Standardizer | None = None
        self.target_scaler: Standardizer | None = None
        self.classes: list[str] = []
        self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        frame = read_table(self.path, **self.read_options)
        require_columns(frame, [self.target], self.path, "target")
        features = self.features or [str(c) for c in frame.columns if str(c) != self.target]
        require_columns(frame, features, self.path, "features")
        x = numeric_columns(frame, features, self.path).to_numpy()
        if np.isnan(x).any():
            row, col = map(int, np.argwhere(np.isnan(x))[0])
            raise UserError(
                f"empty cell in column '{features[col]}' of {self.path} at data row {row + 1}: fill it"
            )
        train_idx, val_idx = shuffled_split(len(x), self.val_fraction, self.seed, what="rows")
        self.feature_scaler = Standardizer.fit(x[train_idx])
        x = self.feature_scaler.transform(x)
        if self.task == "classification":
            labels = frame[self.target].astype(str).str.strip().to_numpy()
            self.classes = sorted(set(labels[train_idx]))
            unseen = sorted(set(labels[val_idx]) - set(self.classes))
            if unseen:
                raise UserError(
                    f"class(es) {unseen} of column '{self.target}' occur only in the validation rows: "
                    "add examples or change data.seed"
                )
            lookup = {c: i for i, c in enumerate(self.classes)}
            y = torch.tensor([lookup[v] for v in labels], dtype=torch.int64)
        else:
            values = numeric_columns(frame, [self.target], self.path).to_numpy()
            self.target_scaler = Standardizer.fit(values[train_idx])
            y = torch.from_numpy(self.target_scaler.transform(values))
        xt = torch.from_numpy(x)
        self.train_set = TensorDataset(xt[train_idx], y[train_idx])
        self.val_set = TensorDataset(xt[val_idx], y[val_idx])
