"""Launcher settings -> submitit SlurmExecutor parameters, and the sbatch script they produce (for --dry-run).

A job of a project (normia.launch.place) also gets `#SBATCH --chdir=<project root>` and, after launcher.setup, the
lines that put the project's code on PYTHONPATH and its configs in NORMIA_CONFIG_PATH."""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from normia.launch.place import JobPlace
from normia.launch.spec import SlurmLauncherCfg

ENV_FILE_PREFIX = "env-"


def setup_lines(
    spec: SlurmLauncherCfg, env_file: Path | None = None, place: JobPlace | None = None
) -> list[str]:
    """Shell lines run in the job script before srun: environment for every task, then the user's setup, then the
    project's code and config folders (last, so a `module purge` or a module that sets PYTHONPATH cannot undo them).
    launcher.env is not written into the script (Slurm keeps scripts, a dry run prints them): the script sources
    env_file, which only the user can read (see write_env_file)."""
    lines = []
    if spec.master_addr:
        lines.append(f"export MASTER_ADDR={shlex.quote(spec.master_addr)}")
    if spec.cpus_per_task:
        lines.append("export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}")
    if spec.env:
        if env_file is None:
            raise ValueError("launcher.env needs an env_file")
        lines.append(f"# launcher.env ({', '.join(map(str, spec.env))}): from a file only you can read")
        lines.append(f"source {shlex.quote(str(env_file))}")
    return lines + list(spec.setup) + (place.script_lines() if place is not None else [])


def env_file_text(spec: SlurmLauncherCfg) -> str:
    return "".join(f"export {key}={shlex.quote(str(value))}\n" for key, value in spec.env.items())


def write_env_file(path: Path, spec: SlurmLauncherCfg) -> None:
    """launcher.env as `export` lines in a new file of mode 0600 (created with that mode: never readable by others,
    not even for an instant; an existing file or link there is refused)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(env_file_text(spec))


def cpus_per_task(spec: SlurmLauncherCfg, partition: str | None) -> int | None:
    if spec.cpus_per_task:
        return spec.cpus_per_task
    limits = spec.partitions.get(partition or "")
    return limits.cpus_per_task if limits else None


def executor_params(
    spec: SlurmLauncherCfg,
    partition: str | None,
    job_name: str,
    env_file: Path | None = None,
    place: JobPlace | None = None,
) -> dict[str, Any]:
    """Parameters for submitit.SlurmExecutor.update_parameters (sbatch's own names). With a place, the job starts
    in its working folder (--chdir; the log paths are absolute, so the logs stay where they were)."""
    extra: dict[str, Any] = {
        # submitit would send USR2 90 s before the end; normia's callback handles the launcher's choice.
        "signal": f"{spec.signal}@{spec.signal_delay_s}",
        "requeue": True,
        "time": spec.time,  # exact, where submitit's own `time` is whole minutes
    }
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": math.ceil(spec.time_s / 60),
        "nodes": spec.nodes,
        "ntasks_per_node": spec.tasks,
        "array_parallelism": spec.array_parallelism,
        "srun_args": list(spec.srun_args),
        "setup": setup_lines(spec, env_file, place),
    }
    if partition:
        params["partition"] = partition
    cpus = cpus_per_task(spec, partition)
    if cpus:
        params["cpus_per_task"] = cpus
    if spec.gpus_per_node:
        if spec.gpus_flag == "gpus" and spec.nodes == 1:
            extra["gpus"] = spec.gpus_per_node
        else:  # on several nodes a total (--gpus) may be split unevenly; one task per GPU needs the same per node
            params["gpus_per_node"] = spec.gpus_per_node
    if spec.mem_gb:
        extra["mem"] = f"{int(spec.mem_gb * 1024)}M"
    for key in ("account", "qos", "constraint"):
        if getattr(spec, key):
            params[key] = getattr(spec, key)
    extra.update({str(k).replace("_", "-"): v for k, v in spec.sbatch_args.items()})
    if place is not None:  # launcher.sbatch_args.chdir too, resolved against this folder (job_place)
        extra["chdir"] = str(place.workdir)
    params["additional_parameters"] = extra
    return params


def python_command(spec: SlurmLauncherCfg) -> str:
    """The command the job runs Python with: launcher.python (checked plain: normia.launch.script_check), else
    this interpreter, quoted."""
    return spec.python or shlex.quote(sys.executable)


def render_script(params: dict[str, Any], folder: Path, python: str, array_size: int | None) -> str:
    """The sbatch script submitit will write for these parameters (same function submitit uses)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=array_size, **params)
