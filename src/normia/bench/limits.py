"""The hardware's limits: datasheet bf16 dense peaks keyed by exact device name (for MFU), and the copy bandwidth and
matmul rate measured on the device in the same run (for the fraction of limit of every kernel).

An unknown device gets no MFU: a wrong peak is worse than none (a MIG slice or a PCIe card has a lower one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normia.bench.timing import Timing, time_fn
from normia.device_peaks import BF16_DENSE_PEAK_TFLOPS, bf16_peak_flops, mfu

__all__ = ["BF16_DENSE_PEAK_TFLOPS", "MeasuredLimits", "bf16_peak_flops", "measure_limits", "mfu"]

# The datasheet peaks live in normia.device_peaks (no torch import), shared with normia train's per-step MFU.


@dataclass(frozen=True)
class MeasuredLimits:
    copy_bytes_per_s: float  # device-to-device copy, bytes read + bytes written
    copy_timing: Timing
    copy_nbytes: int
    matmul_flops_per_s: float
    matmul_timing: Timing
    matmul_n: int
    matmul_dtype: str

    def as_dict(self) -> dict:
        return {
            "copy_gbps": self.copy_bytes_per_s / 1e9,
            "copy_nbytes": self.copy_nbytes,
            "copy_timing": self.copy_timing.as_dict(),
            "matmul_tflops": self.matmul_flops_per_s / 1e12,
            "matmul_n": self.matmul_n,
            "matmul_dtype": self.matmul_dtype,
            "matmul_timing": self.matmul_timing.as_dict(),
        }


def measure_limits(
    device: torch.device,
    *,
    dtype: torch.dtype,
    copy_nbytes: int | None = None,
    matmul_n: int | None = None,
    min_time_s: float = 0.3,
) -> MeasuredLimits:
    """Measure the copy bandwidth and the matmul rate now, on random data (zeros run faster than real data)."""
    on_gpu = device.type == "cuda"
    copy_nbytes = copy_nbytes or (2 << 30 if on_gpu else 64 << 20)
    copy_timing = _time_copy(copy_nbytes, device, min_time_s)
    matmul_n = matmul_n or (8192 if on_gpu else 1024)
    matmul_timing = _time_matmul(matmul_n, dtype, device, min_time_s)
    return MeasuredLimits(
        copy_bytes_per_s=2 * copy_nbytes / (copy_timing.median_ms * 1e-3),
        copy_timing=copy_timing,
        copy_nbytes=copy_nbytes,
        matmul_flops_per_s=2 * matmul_n**3 / (matmul_timing.median_ms * 1e-3),
        matmul_timing=matmul_timing,
        matmul_n=matmul_n,
        matmul_dtype=str(dtype).removeprefix("torch."),
    )


def _time_copy(nbytes: int, device: torch.device, min_time_s: float) -> Timing:
    src = torch.randint(-128, 127, (nbytes,), dtype=torch.int8, device=device)
    dst = torch.empty_like(src)
    return time_fn(lambda: dst.copy_(src), device, min_time_s=min_time_s)


def _time_matmul(n: int, dtype: torch.dtype, device: torch.device, min_time_s: float) -> Timing:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return time_fn(lambda: a @ b, device, min_time_s=min_time_s)
