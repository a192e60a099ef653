"""The pre-flight check inside a Slurm job, before training (TrainJob) or alone (`normia check-nodes`).

Its own short-lived process group on a port apart from Lightning's (Lightning takes 15000 + the job id's last four
digits; this takes 25000 + them modulo 7000, or MASTER_PORT + 1), destroyed before training starts. On failure the failing nodes
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
    """Check this job's nodes; None when they passed (training may start), else the exit code for this rank.

    Nodes named by the check (a device problem, a slow rank) are excluded and the job requeued
    (launcher.exclude_failed_nodes); a group under the bus-bandwidth floor, which names no node, stops the job. A GPU
    that fails before the check can run (its CUDA context, its process group) requeues away from its own node."""
    import torch
    import torch.distributed as dist

    from normia.launch.node_check import check_nodes
    from normia.launch.node_failure import hardware_fault, requeue_after_fault
    from normia.launch.rendezvous import master_address
    from normia.node import node_name

    rank = int(os.environ["SLURM_PROCID"])
    world = int(os.environ["SLURM_NTASKS"])
    max_requeues = int(cfg.launcher.get("max_requeues", 10))
    exclude = bool(cfg.launcher.get("exclude_failed_nodes", True))
    address, _ = master_address()
    try:
        use_gpu = torch.cuda.is_available() and str(cfg.trainer.get("accelerator")) in ("gpu", "cuda", "auto")
        if use_gpu:
            torch.cuda.set_device(int(os.environ.get("SLURM_LOCALID", "0")))
        dist.init_process_group(
            "nccl" if use_gpu else "gloo",
            init_method=f"tcp://{address}:{_port()}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=INIT_TIMEOUT_S),
        )
    except Exception as err:  # before any collective: this rank alone knows, and says it in one line
        fault = hardware_fault(err)
        message = " ".join(str(err).split())[:300]
        print(
            f"error: pre-flight check could not start on rank {rank} ({node_name()}, master {address}:{_port()}): "
            f"{message}",
            file=sys.stderr,
            flush=True,
        )
        if fault is not None and fault.kind == "device" and exclude:
            requeue_after_fault(
                [node_name()], f"rank {rank} on {node_name()}: {fault.line}", output_dir, max_requeues
            )
        return PREFLIGHT_EXIT_CODE
    verdict = check_nodes(
        node_name(),
        floor_gbps=floor_for(cfg),
        slow_factor=float(cfg.launcher.get("preflight_slow_factor", 3.0)),
    )
    if rank == 0:
        _record(verdict, output_dir, world)
    code = None
    if verdict.failed or verdict.group:
        code = PREFLIGHT_EXIT_CODE
        if rank == 0:
            failed = sorted(verdict.failed)
            reasons = "; ".join(
                [f"{n}: {', '.join(w)}" for n, w in sorted(verdict.failed.items())] + verdict.group
            )
            said = (
                requeue_after_fault(failed, reasons, output_dir, max_requeues) if failed and exclude else None
            )
            where = f" on {', '.join(failed)}" if failed else ""
            print(
                f"error: pre-flight check failed{where}: {reasons}; "
                + (said or "the job stops (fix or drain the node, or launcher.preflight=false)"),
                file=sys.stderr,
                flush=True,
            )
        dist.barrier()  # nobody exits before rank 0 has requeued (srun would end rank 0 on another's exit)
    dist.destroy_process_group()  # every rank is alive and past its last collective here
    return code


def _record(verdict: Any, output_dir: str | Path, world: int) -> None:
    """Rank 0: the table in the run folder and the job's log, for the MLflow run (LAST_TABLE), and the event."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / PREFLIGHT_FILE).write_text(verdict.to_json())
    LAST_TABLE.update(json=verdict.to_json(), summary=verdict.summary())
    print("\n".join(verdict.lines()), flush=True)
    events.record(
        output_dir,
        "preflight",
        seconds=verdict.seconds,
        failed=sorted(verdict.failed),
        group=verdict.group,
        world_size=world,
    )


def _port() -> int:
    """Apart from Lightning's (15000-24999) and below Linux's ephemeral ports (32768 and up)."""
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"]) + 1
    job = os.environ.get("SLURM_JOB_ID", "")
    return 25000 + int(job[-4:]) % 7000 if job[-4:].isdigit() else 25910


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
