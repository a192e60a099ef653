"""Which device a benchmark runs on, and the run's provenance (driver, versions, git commit, date).

The device name is the key of the peak table (limits.py) and of the results folder, so it is read exactly as the
driver reports it: 'NVIDIA H200', 'NVIDIA A100-SXM4-80GB', or 'cpu: <model name>' on a CPU.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from normia.errors import UserError


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    name: str
    slug: str  # short name for folders: h200, a100-sxm4-80gb, cpu
    driver: str
    memory_bytes: int | None
    count: int  # GPUs visible on this node (1 for a CPU)


def resolve_device(spec: str) -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU; refuse 'cuda' on a machine without one."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise UserError(f"unknown device '{spec}': use auto, cpu or cuda[:N]") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{spec}' asked for but no CUDA GPU is visible: use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device type '{device.type}' is not supported: use auto, cpu or cuda[:N]")
    return device


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _slug(name: str) -> str:
    short = name.removeprefix("NVIDIA ").removeprefix("AMD Instinct ").lower()
    return re.sub(r"[^a-z0-9]+", "-", short).strip("-") or "device"


def describe(device: torch.device) -> DeviceInfo:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        name = torch.cuda.get_device_name(index)
        return DeviceInfo(
            device, name, _slug(name), _gpu_driver(), props.total_memory, torch.cuda.device_count()
        )
    model = cpu_model()
    return DeviceInfo(device, f"cpu: {model}", "cpu", platform.platform(), _cpu_memory(), 1)


def _cpu_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _gpu_driver() -> str:
    """NVIDIA driver version through NVML when installed, else nvidia-smi, else the CUDA/HIP runtime version."""
    try:
        import pynvml  # provided by the nvidia-ml-py package

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return (
        f"cuda {torch.version.cuda}" if torch.version.cuda else f"hip {getattr(torch.version, 'hip', None)}"
    )


def git_commit() -> str | None:
    """The normia source tree's commit (+ '-dirty' when it has uncommitted changes); None outside a checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance(info: DeviceInfo) -> dict:
    """Everything a reader needs to know where a figure came from."""
    import normia

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": info.name,
        "device_slug": info.slug,
        "device_count": info.count,
        "device_memory_bytes": info.memory_bytes,
        "driver": info.driver,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": triton_version,
        "normia": normia.__version__,
        "normia_commit": git_commit(),
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
