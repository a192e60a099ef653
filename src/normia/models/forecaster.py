"""A patch-based transformer forecaster for multivariate series, with the seasonal-naive baseline built in.

The design follows PatchTST (Nie et al., 2023) at small scale: each channel is forecast independently with shared
weights; the input window is normalised per sample and channel (so a trending series looks stationary to the
network, and the level is restored at the end), cut into patches, embedded, passed through `n_layers` transformer
encoder layers, and a linear head maps every patch token to the horizon. A linear skip from the raw window to the
horizon (as in DLinear) gives a strong start that the transformer refines; `n_layers=0` leaves the linear model alone.

`loss` also reports the mean absolute error of the seasonal-naive forecast (the value one season earlier) on the same
targets, so every run logs its own baseline next to its error: `mae` must fall below `mae_snaive`.

The data module standardises the series; once it has handed over the training period's per-channel std
(`set_data_facts`, called by normia's series data module when Lightning sets it up), `loss` also reports the errors in
the data's own units: `mae_orig`, `rmse_orig` and `mae_snaive_orig` (ppm for CO2, µg/m3 for PM10), over all
horizon steps and channels. `rmse_orig` is the root of the batch's mean squared error; validation accumulates its
square and takes the root after summing over batches and ranks (training/val_metrics.py), so `val/rmse_orig` is the
exact RMSE over the validation windows, not a mean of per-batch RMSEs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def seasonal_naive(inputs: Tensor, horizon: int, season_length: int) -> Tensor:
    """Forecast step h as the value `season_length` steps before it, repeating the last season (B, L, C) -> (B, H, C)."""
    if season_length > inputs.shape[1]:
        raise ValueError(f"season_length {season_length} exceeds the input window {inputs.shape[1]}")
    last_season = inputs[:, -season_length:]
    repeats = -(-horizon // season_length)
    return last_season.repeat(1, repeats, 1)[:, :horizon]


class PatchForecaster(nn.Module):
    """(B, input_len, C) -> (B, horizon, C); see the module docstring."""

    def __init__(
        self,
        input_len: int,
        horizon: int,
        patch_len: int = 6,
        dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.1,
        season_length: int | None = None,
    ) -> None:
        super().__init__()
        if input_len < 1 or horizon < 1 or patch_len < 1 or input_len % patch_len:
            raise ValueError(
                f"PatchForecaster needs input_len ({input_len}) to be a positive multiple of patch_len ({patch_len}) "
                f"and horizon ({horizon}) >= 1"
            )
        if season_length is not None and not 1 <= season_length <= input_len:
            raise ValueError(f"season_length ({season_length}) must lie in [1, input_len={input_len}]")
        self.input_len, self.horizon, self.patch_len = input_len, horizon, patch_len
        self.season_length = season_length
        # (1, 1, C) std of each channel in the data's units; not a parameter and not saved (the data module re-sends it)
        self.register_buffer("target_std", torch.empty(0), persistent=False)
        n_patches = input_len // patch_len
        self.linear_skip = nn.Linear(input_len, horizon)
        self.n_layers = n_layers
        if n_layers > 0:
            self.embed = nn.Linear(patch_len, dim)
            self.position = nn.Parameter(torch.zeros(1, n_patches, dim))
            layer = nn.TransformerEncoderLayer(
                dim, n_heads, dim_feedforward=4 * dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(n_patches * dim, horizon)
            nn.init.zeros_(self.head.weight)  # start as the linear model; the transformer learns a correction
            nn.init.zeros_(self.head.bias)

    def forward(self, inputs: Tensor) -> Tensor:
        batch, length, channels = inputs.shape
        if length != self.input_len:
            raise ValueError(f"expected an input window of {self.input_len} steps, got {length}")
        mean = inputs.mean(dim=1, keepdim=True)
        std = inputs.std(dim=1, keepdim=True, unbiased=False).clamp_min(1e-5)
        x = ((inputs - mean) / std).transpose(1, 2).reshape(batch * channels, length)  # channel-independent
        out = self.linear_skip(x)
        if self.n_layers > 0:
            tokens = self.embed(x.reshape(batch * channels, -1, self.patch_len)) + self.position
            tokens = self.norm(self.encoder(tokens))
            out = out + self.head(tokens.flatten(1))
        out = out.reshape(batch, channels, self.horizon).transpose(1, 2)
        return out * std + mean

    def set_data_facts(self, target_std: list[float] | None = None, **_: object) -> None:
        """target_std: the per-channel std (C values, data units) that standardised the targets; enables the
        `*_orig` metrics. Other facts are ignored."""
        if target_std is not None:
            std = torch.as_tensor(target_std, dtype=torch.float32).reshape(1, 1, -1)
            self.target_std = std.to(self.linear_skip.weight.device)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(inputs (B, L, C), targets (B, H, C)), standardised -> (MSE loss, {mae, [mae_snaive], [*_orig]})."""
        inputs, targets = batch
        prediction = self(inputs)
        loss = nn.functional.mse_loss(prediction, targets)
        error = prediction - targets
        metrics = {"mae": error.abs().mean()}
        scale = self.target_std if self.target_std.numel() == targets.shape[-1] else None
        if scale is not None:
            scaled = error * scale.to(error.dtype)
            metrics["mae_orig"] = scaled.abs().mean()
            metrics["rmse_orig"] = scaled.pow(2).mean().sqrt()
        if self.season_length is not None:
            baseline = seasonal_naive(inputs, self.horizon, self.season_length)
            metrics["mae_snaive"] = (baseline - targets).abs().mean()
            if scale is not None:
                metrics["mae_snaive_orig"] = ((baseline - targets) * scale.to(error.dtype)).abs().mean()
        return loss, metrics

    @torch.no_grad()
    def predict(self, inputs: Tensor) -> Tensor:
        return self(inputs)
