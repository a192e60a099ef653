"""Step time with the real data loader against the same model fed in-memory synthetic batches of the same shapes.

The loader must not be the bottleneck: the ratio real / synthetic should stay under 1.10. Run as a script for the
figures: python tests/poc/loader_speed.py
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _cycle(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def step_times(model: torch.nn.Module, next_batch: Callable[[], Any], steps: int, warmup: int = 3) -> float:
    """Median seconds per optimizer step (forward, backward, AdamW) with batches from next_batch()."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + warmup):
        start = time.perf_counter()
        loss, _ = model.loss(next_batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def loader_time(datamodule: Any, batches: int = 60) -> float:
    """Median seconds to fetch one training batch, measured alone (with num_workers=0 the fetch runs serially
    before each step, so a real step costs about synthetic step + this)."""
    it = _cycle(datamodule.train_dataloader())
    next(it)
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def compare(model: torch.nn.Module, datamodule: Any, steps: int = 30, rounds: int = 3) -> dict[str, float]:
    """Interleaved rounds of real-loader and synthetic steps: the best median of each and their ratio, plus the
    loader's own time per batch relative to the synthetic step (`overhead`, far less sensitive to machine noise)."""
    real_iter = _cycle(datamodule.train_dataloader())
    sample = next(real_iter)
    synthetic = tuple(t.clone() for t in sample)  # same shapes and dtypes, already in memory
    real, fake = [], []
    for _ in range(rounds):
        real.append(step_times(model, lambda: next(real_iter), steps))
        fake.append(step_times(model, lambda: synthetic, steps))
    fetch = loader_time(datamodule)
    return {
        "real_s": min(real),
        "synthetic_s": min(fake),
        "ratio": min(real) / min(fake),
        "loader_s": fetch,
        "overhead": fetch / min(fake),
    }


def poc_cases() -> dict[str, Callable[[], tuple[torch.nn.Module, Any]]]:
    from normia.data.digits import DigitsDataModule
    from normia.data.series import SeriesDataModule
    from normia.data.text import TextDataModule
    from normia.models.forecaster import PatchForecaster
    from normia.models.llama import Llama
    from normia.models.resnet import ResNetClassifier

    def co2():
        data = SeriesDataModule(dataset="co2", resample="MS", fill="interpolate", input_len=36, horizon=12)
        return PatchForecaster(36, 12, patch_len=6, dim=32, n_layers=1, n_heads=4, season_length=12), data

    def digits():
        data = DigitsDataModule(flatten=False)
        data.setup()
        return ResNetClassifier(1, 10, widths=(16, 32), blocks_per_stage=1, dropout=0.1), data

    def shakespeare():
        data = TextDataModule(corpus="coriolanus", seq_len=64, batch_size=32)
        return Llama(256, 96, 2, 4, n_kv_heads=2, max_seq_len=64), data

    return {"co2_forecast": co2, "digits_resnet": digits, "shakespeare_bytes": shakespeare}


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    for name, build in poc_cases().items():
        model, data = build()
        result = compare(model, data)
        print(
            f"{name:<18} real loader {result['real_s'] * 1e3:7.2f} ms/step   in-memory synthetic "
            f"{result['synthetic_s'] * 1e3:7.2f} ms/step   ratio {result['ratio']:.3f}   "
            f"loader alone {result['loader_s'] * 1e3:5.2f} ms/batch = {100 * result['overhead']:.1f}% of a step"
        )
