"""`normia info`: what a bug report or a cluster admin needs first. Imports torch only (not lightning or mlflow):
package versions are read from their metadata."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata

PACKAGES = ("normia", "torch", "triton", "lightning", "hydra-core", "mlflow", "submitit", "numpy")
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_NUM_NODES",
    "SLURM_NTASKS",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_GPUS_ON_NODE",
    "CUDA_VISIBLE_DEVICES",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_lines() -> list[str]:
    import torch

    lines = [
        f"cuda (torch build)  {torch.version.cuda or 'none'}",
        f"hip (torch build)   {torch.version.hip or 'none'}",
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(
                f"gpu {i}  {props.name}  {props.total_memory / 2**30:.0f} GiB  sm_{props.major}{props.minor}"
            )
    else:
        lines.append("gpu  none visible (CPU only)")
    lines.append(f"cpu  {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}")
    return lines


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="normia info", description="Versions, devices and SLURM environment."
    ).parse_args(argv)
    print(f"python              {sys.version.split()[0]} ({platform.platform()})")
    for name, version in package_versions().items():
        print(f"{name:<20}{version}")
    for line in device_lines():
        print(line)
    slurm = {var: os.environ[var] for var in SLURM_VARS if var in os.environ}
    if slurm:
        print("slurm")
        for var, value in slurm.items():
            print(f"  {var:<24}{value}")
    else:
        print("slurm               not in a Slurm job")
    return 0
