"""How many CPU threads `normia bench kernels` gives torch on a CPU when --threads is not given (issue 25 D6).

torch's default is one OpenMP thread per core the machine reports. Every parallel CPU op ends at a barrier, so one
op takes as long as its slowest thread: when another process holds one of those cores, the op waits for a
scheduler time slice (milliseconds) instead of microseconds. Measured on a 2-core VM with a load average of ~6:
eager rms_norm 256x1024 took 0.07 ms or 76 ms with 2 threads (p20-p80 of one run up to 18x apart), 0.10-0.6 ms
with 1. So the default is the physical cores this process may use that nobody else is using:

    threads = max(1, min(physical cores in sched_getaffinity, cgroup CPU quota) - round(1-minute load average))

Hyper-threads of one core count once (they share its execution units, so a second thread per core makes the
threads uneven); the cgroup quota (cpu.max) caps a container that sees every host CPU. The load average is read
before any measurement, so it is other processes' work. The choice and its reason are printed in the run's
header and recorded in the results JSON (`cpu_threads`, `cpu_threads_reason`); --threads N overrides it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def allowed_cpus() -> set[int]:
    """The logical CPUs this process may run on (its affinity), or all of them where affinity is unknown."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int], sys_cpu: Path = SYS_CPU) -> int:
    """Distinct (package, core) pairs among `cpus` from sysfs topology; len(cpus) where sysfs does not say."""
    cpus = list(cpus)
    cores = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add((topo.joinpath("physical_package_id").read_text().strip(),
                       topo.joinpath("core_id").read_text().strip()))  # fmt: skip
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def cgroup_cpu_quota(path: Path = CGROUP_CPU_MAX) -> float | None:
    """CPUs the cgroup (v2) may use, quota / period from cpu.max ("200000 100000" -> 2.0); None when unlimited."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def load_average() -> float:
    """The 1-minute load average (runnable threads of the whole machine); 0 where the OS does not report it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def choose_cpu_threads(physical: int, quota: float | None, load: float) -> tuple[int, str]:
    """The thread count from the formula of the module docstring, and the reason in words."""
    usable = physical if quota is None else max(1, min(physical, math.ceil(quota)))
    busy = round(load)
    threads = max(1, usable - busy)
    limit = f"{physical} physical core(s) allowed" + (f", cgroup quota {quota:g} CPU(s)" if quota else "")
    return threads, f"{limit}, load average {load:.1f} from other processes; --threads N to override"


def default_cpu_threads() -> tuple[int, str]:
    """Read this machine's topology, quota and load and choose (see `choose_cpu_threads`)."""
    return choose_cpu_threads(physical_cores(allowed_cpus()), cgroup_cpu_quota(), load_average())
