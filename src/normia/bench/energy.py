"""Energy read from the hardware's cumulative counters: NVML's total energy on NVIDIA GPUs, RAPL on CPUs where
/sys/class/powercap is readable. Where neither is, energy is reported as unavailable with the reason, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter:
    """Monotonic energy counters in joules (one per GPU or CPU package). `read()` around the measured region,
    then `joules_since(start)`; each counter may wrap at its own range (RAPL's max_energy_range_uj)."""

    def __init__(
        self, source: str, read_j: Callable[[], list[float]], wrap_j: list[float | None] | None = None
    ) -> None:
        self.source = source
        self._read_j = read_j
        self._wrap_j = wrap_j

    def read(self) -> list[float]:
        return self._read_j()

    def joules_since(self, start: list[float]) -> float:
        total = 0.0
        for i, (now, then) in enumerate(zip(self._read_j(), start)):
            wrap = self._wrap_j[i] if self._wrap_j else None
            if now < then and wrap:
                now += wrap
            total += now - then
        return total


def open_meter(device: torch.device) -> tuple[EnergyMeter | None, str]:
    """The energy meter for `device` and its description, or (None, why not)."""
    if device.type == "cuda":
        return _nvml_meter(device)
    return _rapl_meter(RAPL_ROOT)


def _nvml_meter(device: torch.device) -> tuple[EnergyMeter | None, str]:
    try:
        import pynvml  # the nvidia-ml-py package
    except ImportError:
        return None, "pynvml (nvidia-ml-py) is not installed"
    try:
        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        # NVML numbers GPUs physically; CUDA_VISIBLE_DEVICES may renumber them. Match by UUID when torch has it.
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        handle = None
        if uuid is not None:
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except pynvml.NVMLError:
                handle = None
        if handle is None:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises on GPUs older than Volta
    except Exception as err:
        return None, f"NVML energy counter not readable: {err}"
    return nvml_energy_meter(pynvml, handle), "nvml total energy"


def nvml_energy_meter(pynvml, handle) -> EnergyMeter:  # type: ignore[no-untyped-def]
    """One GPU's meter: NVML's total energy since the driver loaded, in millijoules, read as a one-counter list."""
    return EnergyMeter("nvml", lambda: [pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3])


def _rapl_meter(root: Path) -> tuple[EnergyMeter | None, str]:
    """Sum the package domains (intel-rapl:N, top level; sub-domains are already included in them)."""
    if not root.is_dir():
        return None, f"{root} does not exist (no RAPL on this machine or kernel)"
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not domains:
        return None, f"no RAPL package domain under {root}"
    files = [d / "energy_uj" for d in domains]
    try:
        wrap_j: list[float | None] = [int((d / "max_energy_range_uj").read_text()) / 1e6 for d in domains]
        for f in files:
            int(f.read_text())
    except (OSError, ValueError) as err:
        return None, f"RAPL counters not readable ({err}); reading energy_uj usually needs root"

    def read_j() -> list[float]:
        return [int(f.read_text()) / 1e6 for f in files]

    return EnergyMeter("rapl", read_j, wrap_j), f"rapl ({len(files)} package domain(s))"


def wh_per_million(joules: float, units: float) -> float:
    """Energy in Wh per million tokens (or samples)."""
    return joules / 3600.0 / units * 1e6
