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
from normia.data.facts import RecordsPredictState, plain, share_with_model, with_predict_state
from normia.data.splits import Standardizer, check_fraction, shuffled_split
from normia.data.table_reader import numeric_columns, read_table, require_columns
from normia.errors import UserError, did_you_mean
from normia.text_limits import shown_bare, shown_list

TASKS = ("regression", "classification")


class TableDataModule(RecordsPredictState, ResumableDataModule):
    """Feature columns -> one target column. Batches: (float32 features (B, F), float32 (B, 1) or int64 (B,) target).

    After setup: `features` (the column names, in order), `feature_scaler`, `target_scaler` (regression), `classes`
    and `majority_class` (classification).
    """

    _defer_setup = False  # for_prediction: the options only, no training table read

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
        self.majority_class: int | None = None
        self.feature_names: list[str] = []
        if not self._defer_setup:
            self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    @classmethod
    def for_prediction(cls, **options: object) -> TableDataModule:
        """The options of a trained run's data config (separator, decimal mark, encoding) without reading its
        training table."""
        module = cls.__new__(cls)
        module._defer_setup = True
        module.__init__(**options)  # type: ignore[misc]
        return module

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._load()
        if self.majority_class is not None:
            share_with_model(self, majority_class=self.majority_class)

    def predict_state(self) -> dict[str, object] | None:
        """What normia predict needs: the feature columns and their train mean/std; the classes (index order) or
        the target's train mean/std (regression, to return predictions in the target's units). None before setup."""
        if self.feature_scaler is None:
            return None
        state: dict[str, object] = {
            "kind": "classify" if self.task == "classification" else "regress",
            "input": "table",
            "features": list(self.feature_names),
            "target": self.target,
            "mean": plain(self.feature_scaler.mean),
            "std": plain(self.feature_scaler.std),
            "classes": list(self.classes),
        }
        if self.target_scaler is not None:
            state.update(target_mean=plain(self.target_scaler.mean), target_std=plain(self.target_scaler.std))
        return state

    def state_dict(self) -> dict[str, object]:
        """The loader position (resume) and the prediction state, both saved in every checkpoint by Lightning."""
        return with_predict_state(super().state_dict(), self.predict_state())

    def _load(self) -> None:
        frame = read_table(self.path, **self.read_options)
        require_columns(frame, [self.target], self.path, "target")
        features = self.features or [str(c) for c in frame.columns if str(c) != self.target]
        self.feature_names = list(features)
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
                    f"class(es) {shown_list(unseen)} of column '{shown_bare(self.target)}' occur only in the validation rows: "
                    "add examples or change data.seed"
                )
            lookup = {c: i for i, c in enumerate(self.classes)}
            y = torch.tensor([lookup[v] for v in labels], dtype=torch.int64)
            self.majority_class = int(np.bincount(y[train_idx].numpy(), minlength=len(self.classes)).argmax())
        else:
            values = numeric_columns(frame, [self.target], self.path).to_numpy()
            self.target_scaler = Standardizer.fit(values[train_idx])
            y = torch.from_numpy(self.target_scaler.transform(values))
        xt = torch.from_numpy(x)
        self.train_set = TensorDataset(xt[train_idx], y[train_idx])
        self.val_set = TensorDataset(xt[val_idx], y[val_idx])
