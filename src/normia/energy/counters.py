"""Cumulative hardware energy counters, read in joules, for the devices this process uses and nothing else.

- NVIDIA GPU: NVML's total energy consumption (nvmlDeviceGetTotalEnergyConsumption, millijoules since the driver was
  loaded; Volta and later), through nvidia-ml-py (module `pynvml`). The GPU is the rank's own CUDA device, found in
  NVML by its UUID (CUDA_VISIBLE_DEVICES renumbers devices; NVML does not), else through CUDA_VISIBLE_DEVICES.
  A MIG slice is refused: NVML's counter covers the whole physical GPU, shared with other jobs.
- AMD GPU (e.g. MI210): amdsmi's energy accumulator (amdsmi_get_energy_count: ticks x counter_resolution in
  microjoules); instantaneous power reads N/A on MI210, the accumulator does not (zeus PR #203 reads the same one).
- CPU and DRAM: RAPL through the powercap sysfs (/sys/class/powercap/intel-rapl:N/energy_uj, microjoules, wrapping at
  max_energy_range_uj; AMD CPUs use the same tree). Package domains count as "cpu", their "dram" sub-domains as
  "dram"; other sub-domains (core, uncore) are inside their package and "psys" spans the platform: not added.
  Reading energy_uj usually needs root (since Linux 5.10, CVE-2020-8694).

A counter that cannot be read gives a reason instead of a number. An estimate (power limit or TDP x time) is built
only when asked for, and carries `estimate=True` so that every figure made from it is labelled so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
KINDS = ("gpu", "cpu", "dram")


@dataclass(frozen=True)
class Counter:
    """One monotonic energy counter of one device, read in joules; `wrap_j`: the value it wraps at, if known."""

    kind: str  # "gpu", "cpu" (CPU package) or "dram"
    source: str  # what was read, e.g. "nvml total energy of GPU-1a2b..."
    read_j: Callable[[], float]
    wrap_j: float | None = None
    estimate: bool = False


def delta_j(then: float, now: float, wrap_j: float | None) -> float:
    """Joules between two readings of one counter, across one wrap-around when its range is known (RAPL). A counter
    that went back without a known range (a driver reload resets NVML's) gives 0 J for that window, not a negative
    or invented figure."""
    if now >= then:
        return now - then
    if wrap_j:
        return now + wrap_j - then
    return 0.0


@dataclass
class CounterSet:
    """The counters one process reads, and for each kind it should have measured but could not, the reason."""

    counters: list[Counter] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def read(self) -> list[float]:
        """One reading of every counter, in joules."""
        return [c.read_j() for c in self.counters]

    def joules_by_kind(self, start: Sequence[float], end: Sequence[float]) -> dict[str, float]:
        """Joules per kind between two readings (wrap-around handled per counter)."""
        out: dict[str, float] = {}
        for c, then, now in zip(self.counters, start, end):
            out[c.kind] = out.get(c.kind, 0.0) + delta_j(then, now, c.wrap_j)
        return out

    def joules_since(self, start: Sequence[float]) -> float:
        """Joules of all counters since `start` (a reading)."""
        return sum(self.joules_by_kind(start, self.read()).values())

    def sources(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c in self.counters:
            out.setdefault(c.kind, []).append(c.source)
        return out

    def estimated(self) -> dict[str, bool]:
        return {c.kind: c.estimate for c in self.counters}

    @property
    def source(self) -> str:
        return "; ".join(c.source for c in self.counters)


# --- NVIDIA -------------------------------------------------------------------------------------------------------


def nvml_counter(pynvml: Any, handle: Any, label: str) -> Counter:
    """One GPU's counter: NVML's total energy since the driver loaded (millijoules, unsigned 64-bit: no wrap)."""
    return Counter(
        "gpu",
        f"nvml total energy of {label}",
        lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3,
    )


def visible_entry(index: int, variable: str) -> str | None:
    """The entry of a *_VISIBLE_DEVICES variable for the process-local device `index` (None if unset/short)."""
    value = os.environ.get(variable)
    if not value:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    return entries[index] if index < len(entries) else None


def nvml_gpu_counter(index: int, uuid: str | None = None, pynvml: Any = None) -> tuple[Counter | None, str]:
    """The counter of CUDA device `index` (as this process numbers it; `uuid` as torch reports it, without "GPU-"),
    or (None, why not)."""
    if pynvml is None:
        try:
            import pynvml  # the nvidia-ml-py package
        except ImportError:
            return None, "pynvml is not installed (pip install nvidia-ml-py, or normia's bench extra)"
    entry = visible_entry(index, "CUDA_VISIBLE_DEVICES")
    if entry is not None and entry.startswith("MIG-"):
        return None, f"MIG slice {entry}: NVML's energy counter covers the whole GPU, shared with other jobs"
    try:
        pynvml.nvmlInit()
        handle, label = None, None
        if uuid:
            label = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            if label.startswith("MIG-"):
                return (
                    None,
                    f"MIG slice {label}: NVML's energy counter covers the whole GPU, shared with other jobs",
                )
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(label)
            except Exception:  # a UUID this driver spells differently: the visible-devices mapping below
                handle = None
        if handle is not None:
            pass
        elif entry is not None and entry.startswith("GPU-"):
            handle, label = pynvml.nvmlDeviceGetHandleByUUID(entry), entry
        else:
            physical = int(entry) if entry is not None else index
            handle, label = pynvml.nvmlDeviceGetHandleByIndex(physical), f"GPU {physical}"
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises on GPUs older than Volta
    except Exception as err:
        return None, f"NVML energy counter not readable: {err}"
    return nvml_counter(pynvml, handle, label), ""


def nvml_power_limit_w(index: int, uuid: str | None = None, pynvml: Any = None) -> float | None:
    """The GPU's enforced board power limit in W (nvmlDeviceGetEnforcedPowerLimit, milliwatts), for an estimate."""
    try:
        if pynvml is None:
            import pynvml
        pynvml.nvmlInit()
        handle = (
            pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            if uuid
            else pynvml.nvmlDeviceGetHandleByIndex(index)
        )
        return pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3
    except Exception:
        return None


# --- AMD ----------------------------------------------------------------------------------------------------------


def amdsmi_energy_j(amdsmi: Any, handle: Any) -> float:
    """amdsmi's accumulator in joules: ticks x counter_resolution (microjoules per tick). The key is "power" before
    ROCm 6.1's python interface renamed it "energy_accumulator"."""
    info = amdsmi.amdsmi_get_energy_count(handle)
    ticks = info.get("energy_accumulator", info.get("power"))
    return float(ticks) * float(info["counter_resolution"]) / 1e6


def amdsmi_gpu_counter(index: int, bdf: str | None = None, amdsmi: Any = None) -> tuple[Counter | None, str]:
    """The counter of HIP device `index` (as this process numbers it), found by PCI address `bdf` when known, else
    through HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES; or (None, why not)."""
    if amdsmi is None:
        try:
            import amdsmi  # ships with ROCm (share/amd_smi)
        except ImportError:
            return None, "amdsmi is not importable (it ships with ROCm: pip install /opt/rocm/share/amd_smi)"
    try:
        amdsmi.amdsmi_init()
        handles = list(amdsmi.amdsmi_get_processor_handles())
        handle = None
        if bdf:
            for h in handles:
                if str(amdsmi.amdsmi_get_gpu_device_bdf(h)).lower() == bdf.lower():
                    handle, label = h, f"AMD GPU {bdf}"
        if handle is None:
            entry = visible_entry(index, "HIP_VISIBLE_DEVICES") or visible_entry(
                index, "ROCR_VISIBLE_DEVICES"
            )
            physical = int(entry) if entry is not None and entry.isdigit() else index
            handle, label = handles[physical], f"AMD GPU {physical}"
        amdsmi_energy_j(amdsmi, handle)
    except Exception as err:
        return None, f"amdsmi energy counter not readable: {err}"
    return Counter(
        "gpu", f"amdsmi energy accumulator of {label}", lambda: amdsmi_energy_j(amdsmi, handle)
    ), ""


# --- RAPL ---------------------------------------------------------------------------------------------------------


def _domain_name(domain: Path) -> str:
    try:
        return (domain / "name").read_text().strip()
    except OSError:
        return ""


def rapl_counters(root: Path = RAPL_ROOT) -> tuple[list[Counter], str]:
    """CPU package ("cpu") and DRAM ("dram") counters of this node from the powercap tree, or ([], why not)."""
    if not root.is_dir():
        return [], f"{root} does not exist (no RAPL on this machine or kernel)"
    packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    packages = [
        p for p in packages if _domain_name(p) in ("", "dram") or _domain_name(p).startswith("package")
    ]
    if not packages:
        return [], f"no RAPL package domain under {root}"
    domains: list[tuple[str, Path]] = []
    for pkg in packages:
        domains.append(("dram" if _domain_name(pkg) == "dram" else "cpu", pkg))
        domains += [
            ("dram", sub) for sub in sorted(root.glob(f"{pkg.name}:*")) if _domain_name(sub) == "dram"
        ]
    counters = []
    try:
        for kind, d in domains:
            wrap = int((d / "max_energy_range_uj").read_text()) / 1e6
            path = d / "energy_uj"
            int(path.read_text())
            counters.append(Counter(kind, f"rapl {kind} energy of {d.name}", _uj_reader(path), wrap_j=wrap))
    except (OSError, ValueError) as err:
        return [], f"RAPL counters not readable ({err}); reading energy_uj usually needs root"
    return counters, ""


def _uj_reader(path: Path) -> Callable[[], float]:
    return lambda: int(path.read_text()) / 1e6


# --- estimates (only when asked for) ------------------------------------------------------------------------------


def power_estimate(
    kind: str, watts: float, basis: str, clock: Callable[[], float] = time.monotonic
) -> Counter:
    """An estimate, not a measurement: `watts` (a power limit or TDP) times elapsed time, labelled as such."""
    return Counter(kind, f"{basis} {watts:g} W x time", lambda: watts * clock(), estimate=True)


# --- what one process reads ---------------------------------------------------------------------------------------


def open_counters(
    device: Any,
    node_leader: bool,
    estimate: bool = False,
    cpu_tdp_w: float | None = None,
    rapl_root: Path = RAPL_ROOT,
) -> CounterSet:
    """The counters of one rank: the GPU it trains on (none for a CPU run), and, on the one rank per node that is
    `node_leader` (local rank 0), the node's CPU packages and DRAM. Other ranks read no CPU counter, so a node is
    counted once however many ranks it runs."""
    found = CounterSet()
    if getattr(device, "type", device) == "cuda":
        _add_gpu(found, device, estimate)
    if node_leader:
        counters, why = rapl_counters(rapl_root)
        found.counters += counters
        kinds = {c.kind for c in counters}
        if "cpu" not in kinds:
            found.missing["cpu"] = why
            if estimate:
                _estimate_cpu(found, cpu_tdp_w)
        if "dram" not in kinds:
            found.missing["dram"] = why or "no RAPL dram domain (AMD CPUs expose the package domain only)"
    return found


def _add_gpu(found: CounterSet, device: Any, estimate: bool) -> None:
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    if getattr(torch.version, "hip", None):
        bdf = None
        if hasattr(props, "pci_bus_id"):
            bdf = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        counter, why = amdsmi_gpu_counter(index, bdf)
    else:
        uuid = getattr(props, "uuid", None)
        counter, why = nvml_gpu_counter(index, str(uuid) if uuid is not None else None)
    if counter is not None:
        found.counters.append(counter)
        return
    found.missing["gpu"] = why
    if estimate:
        watts = None if getattr(torch.version, "hip", None) else nvml_power_limit_w(index)
        if watts:
            found.counters.append(power_estimate("gpu", watts, "GPU power limit"))
        else:
            found.missing["gpu"] += "; no estimate either: the GPU's power limit is not readable"


def _estimate_cpu(found: CounterSet, cpu_tdp_w: float | None) -> None:
    if cpu_tdp_w:
        found.counters.append(power_estimate("cpu", float(cpu_tdp_w), "energy.cpu_tdp_w"))
    else:
        found.missing["cpu"] += "; no estimate either: energy.cpu_tdp_w is not set"
