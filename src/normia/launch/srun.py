"""launcher=srun: this process is one rank of a Slurm job step (`srun ... normia train ... launcher=srun`, as in the
slurm/*.sbatch templates). Nothing is submitted: devices/num_nodes come from the allocation, each job runs here,
and the same preemption handling as submitted jobs applies (checkpoint at a step boundary, requeue). In a project,
each job runs in the project's folder with its code and configs, as a submitted job does (normia.launch.place); its
output folder and MLflow store stay where this command was started."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from normia.config.masking import mask_text
from normia.config.names import check_name
from normia.errors import UserError
from normia.launch.place import job_place, pin_paths
from normia.launch.trainer_fit import explicit_keys, fit_trainer

DONE = "done.json"


def allocation_shape() -> tuple[int, int]:
    """(nodes, tasks per node) of the current job step, from Slurm's environment."""
    ntasks = int(os.environ["SLURM_NTASKS"])
    nodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    if ntasks % nodes:
        raise UserError(
            f"this step has {ntasks} tasks on {nodes} nodes (uneven); use the same --ntasks-per-node on every node"
        )
    return nodes, ntasks // nodes


def run_in_allocation(jobs: list[DictConfig], dry_run: bool) -> int:
    if "SLURM_PROCID" not in os.environ or "SLURM_NTASKS" not in os.environ:
        raise UserError(
            "launcher=srun runs inside a Slurm job step (srun normia train ... launcher=srun); "
            "to submit from a login node use launcher=slurm"
        )
    nodes, tasks = allocation_shape()
    place = job_place()
    for cfg in jobs:
        check_name(cfg.name)  # it names the job's output folder
        accelerator = str(cfg.trainer.get("accelerator", "auto"))
        gpus = tasks if accelerator in ("gpu", "cuda") else 0
        fit_trainer(cfg, nodes, tasks, gpus)
        _stable_output_dir(cfg, len(jobs))
        if place is not None:  # the job starts in the project's folder: its files stay where they go today
            pin_paths(cfg, place)
    master = jobs[0].launcher.get("master_addr")
    if master:
        os.environ["MASTER_ADDR"] = str(master)
    rank_zero = os.environ["SLURM_PROCID"] == "0"
    if dry_run:
        if rank_zero:
            for cfg in jobs:
                shown = mask_text(" ".join(str(o) for o in cfg.overrides)) or "(defaults)"
                print(f"{nodes} node(s) x {tasks} task(s): {shown} -> {cfg.paths.output_dir}")
            if place is not None:
                print("\n".join(place.describe("each rank enters it before training")))
            print("dry run: nothing run")
        return 0
    from normia.launch.job import TrainJob

    for cfg in jobs:
        if len(jobs) > 1 and (Path(cfg.paths.output_dir) / DONE).is_file():
            if rank_zero:
                print(f"already done, skipped: {cfg.paths.output_dir}")
            continue
        TrainJob(cfg, place)()
    return 0


def _stable_output_dir(cfg: DictConfig, n_jobs: int) -> None:
    """One folder per Slurm job, the same in every rank and after a requeue (so the requeued job resumes), unless
    the user chose one. (The default timestamped folder would differ between ranks started a second apart.)"""
    if n_jobs > 1 or "paths.output_dir" in explicit_keys(list(cfg.get("overrides") or [])):
        return
    job = os.environ.get("SLURM_JOB_ID", "0")
    array_task = os.environ.get("SLURM_ARRAY_TASK_ID")
    name = f"slurm-{os.environ.get('SLURM_ARRAY_JOB_ID', job)}_{array_task}" if array_task else f"slurm-{job}"
    cfg.paths.output_dir = str(Path(cfg.paths.output_root) / str(cfg.name) / name)
