"""The pre-flight check inside a Slurm job, before training (TrainJob) or alone (`normia check-nodes`).

Its own short-lived process group on a port apart from Lightning's (Lightning takes 15000 + the job id's last four
digits; this takes 25000 + them, or MASTER_PORT + 1), destroyed before training starts. On failure the failing nodes
get one line each; rank 0 requeues the job without them (launcher.exclude_failed_nodes) or the job stops with
PREFLIGHT_EXIT_CODE. The table goes to <output_dir>/preflight.json, which the MLflow run attaches.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from normia.launch import events

PREFLIGHT_EXIT_CODE = (
    75  # EX_TEMPFAIL (sysexits.h): the nodes, not the job, are at fault; try again elsewhere
)
PREFLIGHT_FILE = "preflight.json"
INIT_TIMEOUT_S = 300.0
# This process's verdict as JSON (rank 0), for the MLflow run that training opens next (SlurmPreemption attaches it).
LAST_TABLE: dict[str, str] = {}


def wanted(cfg: DictConfig) -> bool:
    """launcher.preflight: auto (on for jobs of more than one node), true, false."""
    mode = str(cfg.launcher.get("preflight", "auto")).lower()
    if mode in ("false", "off", "none"):
        return False
    if mode in ("true", "on"):
        return True
    return int(os.environ.get("SLURM_JOB_NUM_NODES", "1") or 1) > 1


def floor_for(cfg: DictConfig) -> float | None:
    """The partition's all-reduce bus-bandwidth floor in GB/s (launcher.partitions.<name>.min_busbw_gbps)."""
    partition = os.environ.get("SLURM_JOB_PARTITION") or cfg.launcher.get("partition")
    limits = (cfg.launcher.get("partitions") or {}).get(partition) if partition else None
    value = limits.get("min_busbw_gbps") if limits is not None else None
    return float(value) if value else None


def run_preflight(cfg: DictConfig, output_dir: str | Path) -> int | None:
    """Check this job's nodes; None when they passed (training may start), else the exit code for this rank."""
    import torch
    import torch.distributed as dist

    from normia.launch.node_check import check_nodes
    from normia.launch.node_failure import requeue_excluding
    from normia.launch.rendezvous import master_address
    from normia.node import node_name

    rank = int(os.environ["SLURM_PROCID"])
    world = int(os.environ["SLURM_NTASKS"])
    use_gpu = torch.cuda.is_available() and str(cfg.trainer.get("accelerator")) in ("gpu", "cuda", "auto")
    if use_gpu:
        torch.cuda.set_device(int(os.environ.get("SLURM_LOCALID", "0")))
    address, _ = master_address()
    dist.init_process_group(
        "nccl" if use_gpu else "gloo",
        init_method=f"tcp://{address}:{_port()}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=INIT_TIMEOUT_S),
    )
    try:
        verdict = check_nodes(
            node_name(),
            floor_gbps=floor_for(cfg),
            slow_factor=float(cfg.launcher.get("preflight_slow_factor", 3.0)),
        )
        code = None
        if rank == 0:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / PREFLIGHT_FILE).write_text(verdict.to_json())
            LAST_TABLE.update(json=verdict.to_json(), summary=verdict.summary())
            print("\n".join(verdict.lines()), flush=True)
            events.record(
                output_dir,
                "preflight",
                seconds=verdict.seconds,
                failed=sorted(verdict.failed),
                world_size=world,
            )
        if verdict.failed:
            code = PREFLIGHT_EXIT_CODE
            if rank == 0:
                reasons = "; ".join(f"{n}: {', '.join(w)}" for n, w in sorted(verdict.failed.items()))
                said = None
                if cfg.launcher.get("exclude_failed_nodes", True):
                    said = requeue_excluding(
                        list(verdict.failed), reasons, output_dir, int(cfg.launcher.get("max_requeues", 10))
                    )
                print(
                    f"error: pre-flight check failed on {', '.join(sorted(verdict.failed))}: {reasons}; "
                    + (said or "the job stops (fix or drain the node, or launcher.preflight=false)"),
                    file=sys.stderr,
                    flush=True,
                )
            dist.barrier()  # nobody exits before rank 0 has requeued (srun would end rank 0 on another's exit)
        return code
    finally:
        dist.destroy_process_group()


def _port() -> int:
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"]) + 1
    job = os.environ.get("SLURM_JOB_ID", "")
    return 25000 + int(job[-4:]) if job[-4:].isdigit() else 25910


def attach_to_run(trackers: list[Any]) -> None:
    """Rank 0, once the MLflow run is open: this attempt's table as the artifact preflight.json and its one-line
    summary as the tag normia.preflight. Best effort: the check passed, training must not fail over its record."""
    if not LAST_TABLE:
        return
    for tracker in trackers:
        client, run_id = getattr(tracker, "experiment", None), getattr(tracker, "version", None)
        if client is None or not run_id or not hasattr(client, "log_text"):
            continue
        try:
            client.log_text(run_id, LAST_TABLE["json"], PREFLIGHT_FILE)
            client.set_tag(run_id, "normia.preflight", LAST_TABLE["summary"])
        except Exception as err:  # a record, not the training: it must not fail the run
            print(
                f"warning: the pre-flight table was not attached to MLflow run {run_id}: {err}",
                file=sys.stderr,
            )
    LAST_TABLE.clear()
