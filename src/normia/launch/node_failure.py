"""Requeue a Slurm job away from the node a failure is attributed to (issue 23).

A hang the watchdog pins on some ranks (training/watchdog.py), an NCCL error or a GPU error is a fault of a node, not
of the user's code: the job is requeued with that node added to its excluded nodes, and the requeued job resumes
from last.ckpt into the same MLflow run. A Python error of the model or data, or a stall shared by every rank (data,
file system), is not requeued: running it again elsewhere would fail the same way.

Slurm refuses to change a running job's ExcNodeList ("Job is no longer pending execution"), so the job is requeued
held, its exclusion updated while it is pending, then released: `scontrol requeuehold`, `update`, `release`
(tried on the tests' Slurm 22.05; Slurm's KillWait, 30 s by default, leaves the caller the time for the three calls).
Imports stay light: the watchdog's thread calls this while the main thread may be stuck.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from normia.launch import events

# Messages of faults of the machine rather than of the code: NCCL's system/remote/internal errors, GPU memory
# errors (ECC, Xid), a GPU that fell off the bus or is unavailable. "CUDA error: out of memory" and a device-side
# assert are the program's own faults and are not listed.
HARDWARE_PATTERNS = (
    r"\bNCCL (error|Error)\b",
    r"nccl(System|Remote|Internal|UnhandledCuda)Error",
    r"uncorrectable ECC error",
    r"\bECC error\b",
    r"\bXid\b",
    r"GPU is lost|fallen off the bus",
    r"unspecified launch failure",
    r"CUDA-capable device\(s\) is/are busy or unavailable",
    r"no CUDA-capable device is detected",
    r"cudaErrorDevicesUnavailable|cudaErrorECCUncorrectable|hipErrorECCNotCorrectable",
)
_HARDWARE = re.compile("|".join(HARDWARE_PATTERNS))
SCONTROL_TIMEOUT_S = 30


def hardware_fault(error: BaseException) -> str | None:
    """The matching line when `error` (or an error it was raised from) reads as a fault of the node, else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        match = _HARDWARE.search(str(current))
        if match:
            line = next(part for part in str(current).splitlines() if match.group(0) in part)
            return " ".join(line.split())[:300]
        current = current.__cause__ or current.__context__
    return None


def requeue_excluding(
    nodes: Iterable[str], reason: str, output_dir: str | Path, max_requeues: int
) -> str | None:
    """Requeue this Slurm job with `nodes` added to its excluded nodes, up to `max_requeues` restarts.

    Returns the sentence to add to the job's error ("requeued excluding node2 ...") when the job was requeued, else
    None after printing why not (not a Slurm job, restarts used up, too few nodes left in the partition, scontrol
    refused). Records a `requeued_excluding` (or `not_requeued`) event in the run folder's slurm_events.jsonl.
    Never raises: it runs while a job is failing.
    """
    bad = sorted({n for n in nodes if n})
    job_id = events.slurm_job_id()
    if job_id is None or not bad:
        return None
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)

    def refuse(why: str) -> None:
        print(f"normia: not requeued away from {','.join(bad)}: {why}", flush=True)
        events.record(output_dir, "not_requeued", reason=why, nodes=bad)

    if restarts >= max_requeues:
        refuse(f"already restarted {restarts} times (launcher.max_requeues={max_requeues})")
        return None
    job = _show_job(job_id)
    if job is None:
        refuse(f"scontrol show job {job_id} failed")
        return None
    excluded = sorted(set(_hostnames(job.get("ExcNodeList", ""))) | set(bad))
    up = _partition_nodes(job.get("Partition", ""))
    left = [n for n in up or [] if n not in excluded]
    needed = int(job.get("NumNodes", "1").split("-")[0] or 1)
    if up is not None and len(left) < needed:
        refuse(
            f"partition {job['Partition']} would have {len(left)} node(s) left for a job of {needed}; "
            "fix or drain the node, then run the same command to resume"
        )
        return None
    held = _scontrol("requeuehold", job_id)
    if held:
        refuse(f"scontrol requeuehold {job_id}: {held}")
        return None
    updated = _scontrol("update", f"JobId={job_id}", f"ExcNodeList={','.join(excluded)}")
    released = _scontrol("release", job_id)
    if released:
        print(
            f"normia: scontrol release {job_id} failed ({released}): release it by hand to resume", flush=True
        )
    if updated:
        print(
            f"normia: the exclusion of {','.join(bad)} was refused ({updated}); requeued as it was",
            flush=True,
        )
    events.record(output_dir, "requeued_excluding", nodes=bad, excluded=excluded, reason=reason[:500])
    where = f"excluding {','.join(bad)}" if not updated else "(exclusion refused)"
    return f"job {job_id} requeued {where} (restart {restarts + 1} of at most {max_requeues}); it resumes from the last checkpoint"


def _scontrol(*args: str) -> str:
    """'' on success, else scontrol's message. scontrol runs with SIGTERM ignored: once the job is requeued, Slurm
    signals every process of the job, and a killed `update` would be reported failed though the controller took it
    (seen on the tests' cluster)."""
    command = ["sh", "-c", 'trap "" TERM; exec scontrol "$@"', "scontrol", *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SCONTROL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return "" if done.returncode == 0 else " ".join((done.stderr or done.stdout).split())[:300] or "failed"


def _show_job(job_id: str) -> dict[str, str] | None:
    """`scontrol show job -o` as KEY=VALUE pairs (values without spaces; enough for the keys read here)."""
    try:
        done = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    first = done.stdout.splitlines()[0] if done.stdout.strip() else ""
    return dict(pair.split("=", 1) for pair in first.split() if "=" in pair)


def _hostnames(expression: str) -> list[str]:
    """node[1-3],gpu7 -> [node1, node2, node3, gpu7], through Slurm's own expansion."""
    if not expression or expression == "(null)":
        return []
    try:
        done = subprocess.run(
            ["scontrol", "show", "hostnames", expression],
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return [expression]
    return done.stdout.split() if done.returncode == 0 else [expression]


def _partition_nodes(partition: str) -> list[str] | None:
    """The nodes of `partition` that are up (not down, drained or failing); None when sinfo cannot say."""
    if not partition:
        return None
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-N", "-p", partition, "-t", "idle,mix,alloc,completing", "-o", "%N"],
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sorted(set(done.stdout.split())) if done.returncode == 0 else None


def tag_exclusions(trackers: list[Any], output_dir: str | Path) -> None:
    """Rank 0 of a requeued attempt, once the MLflow run is reopened: the nodes every earlier attempt excluded
    (slurm_events.jsonl) as the tag normia.excluded_nodes, the last reason as normia.requeued_after. Whatever
    requeued the job (a hang, an NCCL or GPU error on any rank, the pre-flight check), the run says it here."""
    requeues = [e for e in events.read(output_dir) if e.get("event") == "requeued_excluding"]
    if not requeues:
        return
    nodes = ",".join(sorted({n for e in requeues for n in e.get("nodes", [])}))
    for tracker in trackers:
        client, run_id = getattr(tracker, "experiment", None), getattr(tracker, "version", None)
        if client is None or not run_id or not hasattr(client, "set_tag"):
            continue
        try:
            client.set_tag(run_id, "normia.excluded_nodes", nodes)
            client.set_tag(run_id, "normia.requeued_after", str(requeues[-1].get("reason", ""))[:5000])
        except Exception as err:  # a record, not the training
            print(
                f"warning: the excluded nodes were not recorded in MLflow run {run_id}: {err}",
                file=sys.stderr,
            )
