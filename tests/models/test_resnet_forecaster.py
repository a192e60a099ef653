"""The image classifier and the forecaster with its seasonal-naive baseline."""

from __future__ import annotations

import pytest
import torch

from normia.models.forecaster import PatchForecaster, seasonal_naive
from normia.models.resnet import ResNetClassifier


def test_resnet_shapes_loss_and_any_input_size() -> None:
    torch.manual_seed(0)
    model = ResNetClassifier(in_channels=1, num_classes=10, widths=(8, 16), blocks_per_stage=1)
    for size in (8, 28):
        images = torch.randn(4, 1, size, size)
        assert model(images).shape == (4, 10)
    loss, metrics = model.loss((torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])))
    assert loss.item() > 0 and 0.0 <= metrics["acc"].item() <= 1.0
    with pytest.raises(ValueError, match="num_classes >= 2"):
        ResNetClassifier(num_classes=1)


def test_resnet_learns_a_separable_problem() -> None:
    torch.manual_seed(0)
    model = ResNetClassifier(in_channels=1, num_classes=2, widths=(8,), blocks_per_stage=1)
    labels = torch.arange(64) % 2
    images = torch.randn(64, 1, 8, 8) * 0.1 + labels.view(-1, 1, 1, 1).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss, _ = model.loss((images, labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model.predict(images) == labels).float().mean().item() == 1.0


def test_seasonal_naive_repeats_the_last_season() -> None:
    inputs = torch.arange(24, dtype=torch.float32).view(1, 24, 1)
    forecast = seasonal_naive(inputs, horizon=18, season_length=12)
    expected = torch.cat([torch.arange(12, 24), torch.arange(12, 18)]).float().view(1, 18, 1)
    assert torch.equal(forecast, expected)


def test_forecaster_is_multivariate_and_reports_its_baseline() -> None:
    torch.manual_seed(0)
    model = PatchForecaster(
        input_len=24, horizon=6, patch_len=6, dim=16, n_layers=1, n_heads=2, season_length=12
    )
    inputs, targets = torch.randn(5, 24, 3), torch.randn(5, 6, 3)
    assert model(inputs).shape == (5, 6, 3)
    _, metrics = model.loss((inputs, targets))
    assert set(metrics) == {"mae", "mae_snaive"}
    baseline = (seasonal_naive(inputs, 6, 12) - targets).abs().mean()
    assert metrics["mae_snaive"].item() == pytest.approx(baseline.item())
    linear_only = PatchForecaster(input_len=24, horizon=6, n_layers=0)
    assert linear_only(inputs).shape == (5, 6, 3)
    with pytest.raises(ValueError, match="multiple of patch_len"):
        PatchForecaster(input_len=25, horizon=6, patch_len=6)
    with pytest.raises(ValueError, match="season_length"):
        PatchForecaster(input_len=24, horizon=6, season_length=30)


def test_forecaster_beats_seasonal_naive_on_a_trending_seasonal_series() -> None:
    """A trend plus a yearly cycle: seasonal naive is off by one year of trend; the model must learn better."""
    torch.manual_seed(0)
    t = torch.arange(400, dtype=torch.float32)
    series = (0.05 * t + torch.sin(2 * torch.pi * t / 12)).view(-1, 1)
    starts = torch.arange(0, 400 - 36 - 12)
    x = torch.stack([series[s : s + 36] for s in starts])
    y = torch.stack([series[s + 36 : s + 48] for s in starts])
    model = PatchForecaster(
        input_len=36, horizon=12, dim=16, n_layers=1, n_heads=2, dropout=0.0, season_length=12
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss, _ = model.loss((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, metrics = model.loss((x, y))
    assert metrics["mae"].item() < 0.5 * metrics["mae_snaive"].item()
