"""Tags that make a run understandable and repeatable: code version, host, world size, Slurm ids, versions."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import normia


def git_state(cwd: str | Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout normia runs from, or (None, None) outside git."""
    cwd = cwd or Path(normia.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


# Packages whose version can change a run's numbers beside torch/lightning, read from their metadata (no import).
NUMERIC_PACKAGES = ("numpy", "pandas")


def versions() -> dict[str, str]:
    """Versions a re-run compares: normia, torch, lightning, CUDA, triton, numpy, pandas and Python."""
    import lightning
    import torch

    out = {"normia": normia.__version__, "torch": torch.__version__, "lightning": lightning.__version__}
    for dist in NUMERIC_PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "none"
    out["python"] = platform.python_version()
    out["cuda"] = torch.version.cuda or "none"
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = "none"
    return out


def gpu_names() -> str:
    import torch

    if not torch.cuda.is_available():
        return "none"
    return ",".join(sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}))


def device_kind(accelerator: str | None = None) -> str:
    """The kind of device a run computes on: 'cuda (<GPU name>)', 'mps' or 'cpu (<machine>)'.

    accelerator None: what this process is using now (CUDA initialised: the GPU; else the CPU), as the tracker sees
    it at the first step. Otherwise what Lightning would pick for trainer.accelerator (cpu, gpu, cuda, mps, auto)."""
    import torch

    cpu = f"cpu ({platform.machine() or 'unknown'})"
    if accelerator is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return f"cuda ({torch.cuda.get_device_name(torch.cuda.current_device())})"
        return cpu
    wanted = accelerator.lower()
    if wanted in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    mps = getattr(torch.backends, "mps", None)
    if wanted in ("mps", "auto", "gpu") and mps is not None and mps.is_available():
        return "mps"
    return cpu


def run_tags(world_size: int) -> dict[str, str]:
    commit, dirty = git_state()
    tags = {
        "normia.git_commit": commit or "unknown",
        "normia.git_dirty": str(dirty).lower() if dirty is not None else "unknown",
        "normia.host": socket.gethostname(),
        "normia.world_size": str(world_size),
        "normia.gpus": gpu_names(),
    }
    tags.update({f"normia.version.{k}": v for k, v in versions().items()})
    for var in (
        "SLURM_JOB_ID",
        "SLURM_ARRAY_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_JOB_NUM_NODES",
        "SLURM_CLUSTER_NAME",
    ):
        if os.environ.get(var):
            tags[f"slurm.{var[len('SLURM_') :].lower()}"] = os.environ[var]
    return tags
