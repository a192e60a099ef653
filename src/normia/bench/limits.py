"""The hardware's limits: datasheet bf16 dense peaks keyed by exact device name (for MFU), and the copy bandwidth and
matmul rate measured on the device in the same run (for the fraction of limit of every kernel).

An unknown device gets no MFU: a wrong peak is worse than none (a MIG slice or a PCIe card has a lower one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normia.bench.timing import Timing, time_fn

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets, keyed by the name the driver
# reports (torch.cuda.get_device_name). Boost clocks; sustained rates are lower, hence the measured matmul rate beside.
BF16_DENSE_PEAK_TFLOPS: dict[str, float] = {
    "NVIDIA H200": 989.4,  # H200 SXM 141 GB
    "NVIDIA H200 NVL": 835.6,
    "NVIDIA H100 80GB HBM3": 989.4,  # H100 SXM5
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.6,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "AMD Instinct MI210": 181.0,
}


def bf16_peak_flops(device_name: str) -> float | None:
    """The datasheet bf16 dense peak in FLOP/s, or None when the exact name is not in the table."""
    tflops = BF16_DENSE_PEAK_TFLOPS.get(device_name)
    return None if tflops is None else tflops * 1e12


def mfu(flops_per_s: float, device_name: str) -> float | None:
    """Model FLOPs utilisation against the device's bf16 dense peak; None (refused) for a device not in the table."""
    peak = bf16_peak_flops(device_name)
    return None if peak is None else flops_per_s / peak


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
