"""Timing of one callable: CUDA events with the L2 cache flushed between repetitions on a GPU (the method of
triton.testing.do_bench, kept here to return every raw sample), torch.utils.benchmark on a CPU.

Every figure is reported as the median with the 20th and 80th percentiles, and the raw samples are kept so a
reader can recompute anything from the JSON file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

# Larger than any current GPU's L2 (H200: 60 MB), as in triton.testing.do_bench.
L2_FLUSH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Timing:
    """Summary of repeated runs of one callable, in milliseconds."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    samples_ms: list[float]
    method: str

    @classmethod
    def from_samples(cls, samples_ms: list[float], method: str) -> Timing:
        if not samples_ms:
            raise ValueError("no timing samples")
        p20, p50, p80 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [20, 50, 80])
        return cls(float(p50), float(p20), float(p80), [float(s) for s in samples_ms], method)

    def as_dict(self) -> dict:
        return asdict(self)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    *,
    min_time_s: float = 0.2,
    min_samples: int = 5,
    max_samples: int = 200,
) -> Timing:
    """Time `fn()` on `device`. `fn` must be re-runnable (no state that grows between calls)."""
    if device.type == "cuda":
        return _time_cuda(fn, device, min_time_s=min_time_s, min_samples=min_samples, max_samples=max_samples)
    return _time_cpu(fn, min_time_s=min_time_s, min_samples=min_samples)


def _time_cpu(fn: Callable[[], object], *, min_time_s: float, min_samples: int) -> Timing:
    # Imported here: the GPU path does not need it.
    from torch.utils import benchmark

    fn()  # warm-up (first call allocates, compiles, fills caches)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    times = list(timer.blocked_autorange(min_run_time=min_time_s).times)
    while len(times) < min_samples:
        times.extend(timer.timeit(1).times)
    return Timing.from_samples([t * 1e3 for t in times], "torch.utils.benchmark.blocked_autorange")


def _time_cuda(
    fn: Callable[[], object], device: torch.device, *, min_time_s: float, min_samples: int, max_samples: int
) -> Timing:
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
    fn()  # warm-up and compile
    synchronize(device)
    # Estimate one call's time to choose the number of repetitions for about min_time_s of measurement.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        flush.zero_()
        fn()
    end.record()
    synchronize(device)
    estimate_ms = max(start.elapsed_time(end) / 3, 1e-3)
    n = int(min(max_samples, max(min_samples, min_time_s * 1e3 / estimate_ms)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        flush.zero_()  # evict the inputs from L2 so every repetition reads them from device memory
        starts[i].record()
        fn()
        ends[i].record()
    synchronize(device)
    del flush
    return Timing.from_samples([s.elapsed_time(e) for s, e in zip(starts, ends)], "cuda-events+l2-flush")
