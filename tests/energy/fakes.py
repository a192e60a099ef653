"""Test doubles of the counter APIs: no test machine has a GPU energy counter (the real NVML path runs in
benchmarks/gpu/run_all.sh), and this VM has no readable RAPL (a fake powercap tree stands in for it)."""

from __future__ import annotations

import os
from pathlib import Path

from normia.energy.counters import Counter


class FakeCounter:
    """A counter whose value the test moves: `joules += x`; as a Counter through `.counter(kind)`."""

    def __init__(self, joules: float = 0.0, wrap_j: float | None = None) -> None:
        self.joules = joules
        self.wrap_j = wrap_j

    def read(self) -> float:
        if self.wrap_j:
            return self.joules % self.wrap_j
        return self.joules

    def counter(self, kind: str = "gpu", source: str = "fake total energy of GPU-0", estimate: bool = False):
        return Counter(kind, source, self.read, wrap_j=self.wrap_j, estimate=estimate)


class FakeNvml:
    """nvidia-ml-py's calls used by normia.energy.counters, over GPUs numbered physically with UUIDs."""

    class NVMLError(Exception):
        pass

    def __init__(self, uuids: list[str], millijoules: list[int] | None = None) -> None:
        self.uuids = uuids
        self.millijoules = millijoules or [1_000_000 * (i + 1) for i in range(len(uuids))]
        self.power_limit_mw = 700_000

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index >= len(self.uuids):
            raise self.NVMLError(f"Invalid Argument (index {index})")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        if uuid not in self.uuids:
            raise self.NVMLError("Not Found")
        return self.uuids.index(uuid)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return self.millijoules[handle]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self.power_limit_mw


class FakeAmdsmi:
    """amdsmi's calls used by normia.energy.counters; `old_key`: the python interface before ROCm 6.1 ("power")."""

    def __init__(self, bdfs: list[str], old_key: bool = False) -> None:
        self.bdfs = bdfs
        self.ticks = [1000 * (i + 1) for i in range(len(bdfs))]
        self.resolution_uj = 15.3
        self.old_key = old_key

    def amdsmi_init(self) -> None:
        pass

    def amdsmi_get_processor_handles(self) -> list[int]:
        return list(range(len(self.bdfs)))

    def amdsmi_get_gpu_device_bdf(self, handle: int) -> str:
        return self.bdfs[handle]

    def amdsmi_get_energy_count(self, handle: int) -> dict:
        key = "power" if self.old_key else "energy_accumulator"
        return {key: self.ticks[handle], "counter_resolution": self.resolution_uj, "timestamp": 0}


def fake_powercap(root: Path, packages: int = 1, dram: bool = True, max_uj: int = 262_143_328_850) -> Path:
    """A powercap tree like Linux's intel-rapl driver writes: package-N domains, each with core and dram
    sub-domains (the core one must not be added: it is inside its package)."""
    for n in range(packages):
        pkg = root / f"intel-rapl:{n}"
        pkg.mkdir(parents=True)
        (pkg / "name").write_text(f"package-{n}\n")
        (pkg / "energy_uj").write_text("0\n")
        (pkg / "max_energy_range_uj").write_text(f"{max_uj}\n")
        subs = [("core", 0), *([("dram", 1)] if dram else [])]
        for name, i in subs:
            sub = root / f"intel-rapl:{n}:{i}"
            sub.mkdir()
            (sub / "name").write_text(f"{name}\n")
            (sub / "energy_uj").write_text("0\n")
            (sub / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return root


def set_uj(domain: Path, microjoules: int) -> None:
    """Write a RAPL counter atomically (another process may be reading it)."""
    tmp = domain / "energy_uj.tmp"
    tmp.write_text(f"{microjoules}\n")
    os.replace(tmp, domain / "energy_uj")


def add_joules(domain: Path, joules: float) -> None:
    set_uj(domain, int((domain / "energy_uj").read_text()) + round(joules * 1e6))
