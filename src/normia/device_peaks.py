"""Datasheet bf16 dense peaks of the GPUs normia's users run on, for MFU (model FLOPs utilisation).

Shared by `normia bench` and `normia train`'s per-step speed, so it imports nothing heavy. An unknown device gets no
MFU: a wrong peak is worse than none (a MIG slice or a PCIe card has a lower one).
MFU = achieved model FLOP/s per device / the device's peak (PaLM, Chowdhery et al. 2022, appendix B).
"""

from __future__ import annotations

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
