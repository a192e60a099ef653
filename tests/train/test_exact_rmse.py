"""val/rmse_orig is the exact RMSE over the validation windows (in the data's units), for any batch size and any
number of ranks: validation accumulates the square of each batch's RMSE and takes the root after the reduction.

Before the fix it was the sample-weighted mean of per-batch RMSEs, which is below the RMSE of the whole set whenever
the batches' errors differ (Jensen): the direct computations below tell the two apart."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import normia
from normia.training.val_metrics import WeightedMeans, is_root_mean

QUIET = [
    "logger.system_metrics=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "model.dropout=0.0",
]
# 526 monthly CO2 means, 94 validation windows of 36 + 12 months: batches of 40, 40 and 14 on one process.
CO2 = ["experiment=poc_co2_forecast", "data.batch_size=40", *QUIET]


def direct_rmse(summary: normia.RunSummary) -> tuple[float, float]:
    """(the RMSE over every validation window and channel, in ppm; the old value: the mean of the RMSEs of the
    one-process validation batches weighted by their sizes), computed from the run's checkpoint in float64."""
    model, data = summary.load_model()
    data.setup("validate")
    inputs, targets = data.val_set.__getitems__(list(range(len(data.val_set))))
    with torch.no_grad():
        errors = (model(inputs) - targets).double() * torch.tensor(data.scaler.std).reshape(1, 1, -1)
    squares = errors.pow(2).mean(dim=(1, 2)).numpy()  # per window (horizon x channels squared errors each)
    batches = [squares[i : i + data.batch_size] for i in range(0, len(squares), data.batch_size)]
    old = sum(len(b) * math.sqrt(b.mean()) for b in batches) / len(squares)
    return math.sqrt(float(squares.mean())), old


def test_root_mean_rule_takes_the_root_after_the_reduction() -> None:
    """Two batches: RMSE 1 over 3 samples, RMSE 3 over 1 sample -> sqrt((3 * 1 + 1 * 9) / 4) = sqrt(3), not 1.5;
    plain means are unchanged."""
    means = WeightedMeans()
    means.update({"rmse_orig": torch.tensor(1.0), "mae": torch.tensor(1.0)}, 3)
    means.update({"rmse_orig": torch.tensor(3.0), "mae": torch.tensor(3.0)}, 1)
    result = means.compute(lambda t: t)
    assert float(result["rmse_orig"]) == pytest.approx(math.sqrt(3.0), rel=1e-12)
    assert float(result["mae"]) == 1.5
    assert is_root_mean("rmse") and is_root_mean("val/rmse_orig") and not is_root_mean("mse_orig")


def test_logged_val_rmse_orig_is_the_rmse_over_the_whole_validation_split(workdir: Path) -> None:
    summary = normia.train(CO2)
    exact, old = direct_rmse(summary)
    logged = summary.metrics["val/rmse_orig"]
    assert 0.05 < exact < 20  # ppm
    assert logged == pytest.approx(exact, rel=1e-5)
    assert abs(old - exact) > 1e-4 * exact  # the test tells the exact RMSE from a mean of batch RMSEs
    assert summary.metrics["val/mae_orig"] <= logged  # MAE <= RMSE over the same errors
    assert np.isfinite(summary.metrics["val/mae_snaive_orig"])


@pytest.mark.slow
def test_two_ddp_ranks_log_the_exact_rmse_of_one_process(workdir: Path) -> None:
    """2 gloo ranks (47 windows each, batches of 40 and 7): the reduced val/rmse_orig is still the RMSE over all 94
    windows computed in one process from the checkpoint."""
    summary = normia.train(
        [*CO2, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "name=co2_ddp"]
    )
    exact, _ = direct_rmse(summary)
    assert summary.metrics["val/rmse_orig"] == pytest.approx(exact, rel=1e-5)
