"""Validation metrics as (sum, count) pairs, summed over batches and ranks: the exact mean of one process.

Every model's loss and metrics are means over the samples of a batch. Weighting each by its batch size and dividing
the sum over all batches of all ranks by the number of samples gives the mean over the validation set, whatever the
batch sizes and the number of ranks, as long as each sample is seen once (EvalSampler). Sums are kept in float64
and summed across ranks once per validation, in one collective.

A root mean square is not a mean: the weighted mean of per-batch RMSEs is below the RMSE of the whole set (Jensen)
whenever the batches differ. A metric whose name (after any `group/` prefix) starts with `rmse` (`rmse`,
`rmse_orig`) is therefore taken to be the root of a per-batch mean of squares with the same number of squared terms
per sample (a forecaster's B x horizon x C errors): its square is accumulated like any mean, and the root is taken
after the reduction across batches and ranks, which gives the exact RMSE over the validation set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ROOT_MEAN_PREFIX = "rmse"


def is_root_mean(name: str) -> bool:
    """True for a metric reduced as a root of the mean of squares (see the module docstring): `rmse*` names."""
    return name.rsplit("/", 1)[-1].startswith(ROOT_MEAN_PREFIX)


class WeightedMeans:
    """Accumulates sample-weighted sums of named batch means; `compute` returns the means over all ranks (and, for
    `rmse*` metrics, the root of the mean of their squares)."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def update(self, means: dict[str, Tensor], count: int) -> None:
        """Add one batch of `count` samples; stays on the device (no host sync per batch). An `rmse*` value is
        squared (in float64) before it is weighted: its batch mean square is what sums exactly."""
        for name, value in means.items():
            value = value.detach().to(torch.float64)
            weighted = (value.square() if is_root_mean(name) else value) * count
            self._sums[name] = self._sums[name] + weighted if name in self._sums else weighted
            self._counts[name] = self._counts.get(name, 0) + int(count)

    def compute(self, sum_across_ranks: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
        """Means over every rank's samples. `sum_across_ranks` is the strategy's all-reduce (identity in one
        process); every rank must call this, with the same metric names (the same model sees >= 1 batch each).
        Returns {name: scalar float64 tensor}; `rmse*` values are the square root of the reduced mean square."""
        names = sorted(self._sums)
        if not names:
            return {}
        sums = torch.stack([self._sums[name] for name in names])
        counts = torch.tensor([self._counts[name] for name in names], dtype=torch.float64, device=sums.device)
        totals = sum_across_ranks(torch.stack([sums, counts]))
        means = {name: totals[0, i] / totals[1, i] for i, name in enumerate(names)}
        return {name: value.sqrt() if is_root_mean(name) else value for name, value in means.items()}
