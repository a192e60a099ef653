"""Energy of the benchmark's timed steps from the hardware's cumulative counters (normia.energy.counters): on a
GPU, that GPU's own counter (NVML's total energy; amdsmi's accumulator on AMD); on a CPU run, the node's RAPL
package and DRAM domains where /sys/class/powercap is readable. Where none is readable, energy is reported as not
measured with the reason, never guessed (the benchmark makes no estimate).
"""

from __future__ import annotations

from pathlib import Path

import torch

from normia.energy.counters import RAPL_ROOT, CounterSet, nvml_counter, open_counters, rapl_counters

EnergyMeter = CounterSet  # read() around the measured region, then joules_since(start)

__all__ = ["RAPL_ROOT", "EnergyMeter", "j_per_unit", "open_meter", "tokens_per_kwh", "wh_per_million"]


def open_meter(device: torch.device) -> tuple[EnergyMeter | None, str]:
    """The counters for `device` and a note "measured: <counters>", or (None, "not measured: <why>"). A GPU run
    counts that GPU only (the host's CPU is shared and not the benchmark's subject); a CPU run counts the node's
    packages and DRAM."""
    found = open_counters(device, node_leader=device.type != "cuda")
    if not found.counters:
        reasons: dict[str, list[str]] = {}  # one reason shared by several kinds is said once
        for kind, why in found.missing.items():
            reasons.setdefault(why, []).append(kind)
        return None, "not measured: " + "; ".join(f"{', '.join(k)}: {why}" for why, k in reasons.items())
    return found, f"measured: {found.source}"


def _rapl_meter(root: Path) -> tuple[EnergyMeter | None, str]:
    counters, why = rapl_counters(root)
    if not counters:
        return None, why
    packages = sum(c.kind == "cpu" for c in counters)
    return CounterSet(counters), f"rapl ({packages} package domain(s))"


def nvml_energy_meter(pynvml, handle) -> EnergyMeter:  # type: ignore[no-untyped-def]
    """One GPU's meter: NVML's total energy since the driver loaded (millijoules), read in joules."""
    return CounterSet([nvml_counter(pynvml, handle, "GPU")])


def wh_per_million(joules: float, units: float) -> float:
    """Energy in Wh per million tokens (or samples): J / 3600 / units x 1e6."""
    return joules / 3600.0 / units * 1e6


def j_per_unit(joules: float, units: float) -> float:
    """Joules per token (or sample)."""
    return joules / units


def tokens_per_kwh(joules: float, tokens: float) -> float:
    """Tokens trained per kilowatt-hour (1 kWh = 3.6e6 J)."""
    return tokens / (joules / 3.6e6)
