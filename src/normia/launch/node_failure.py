"""Requeue a Slurm job after a fault of the machine, away from the node it is attributed to (issue 23).

A hang the watchdog pins on some ranks (training/watchdog.py), a GPU error (ECC, Xid, off the bus) or a failed
pre-flight check is a fault of a node, not of the user's code: the job is requeued with that node added to its
excluded nodes, and the requeued job resumes from last.ckpt into the same MLflow run. An NCCL network error names no
node (the healthy peers report it too): the job is requeued as it is, and the next attempt's pre-flight check (jobs of
2+ nodes) finds the bad node. A Python error of the model or data, or a stall shared by every rank (data, file
system), is not requeued: running it again elsewhere would fail the same way.

Slurm refuses to change a running job's ExcNodeList ("Job is no longer pending execution"), so the job is requeued
held, its exclusion updated while it is pending, then released: `scontrol requeuehold`, `update`, `release`
(tried on the tests' Slurm 22.05; Slurm's KillWait, 30 s by default, leaves the caller the time for the three calls).
Imports stay light: the watchdog's thread calls this while the main thread may be stuck.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from normia.launch import events
from normia.launch.slurm_commands import scontrol, scontrol_steps, slurm_output

# Faults of this process's own GPU: its node is to blame. Messages of NVIDIA's driver and CUDA/HIP runtimes for
# uncorrectable memory errors, driver Xid events, a GPU off the bus or unavailable. Errors that code can cause too
# ("CUDA error: out of memory", a device-side assert, "unspecified launch failure", ncclInvalidUsage,
# ncclUnhandledCudaError) are left out.
DEVICE_PATTERNS = (
    r"uncorrectable ECC error",
    r"cudaErrorECCUncorrectable|hipErrorECCNotCorrectable",
    r"NVRM: Xid",
    r"GPU is lost|fallen off the bus",
    r"CUDA-capable device\(s\) is/are busy or unavailable|cudaErrorDevicesUnavailable",
)
# Faults of the network between ranks: every rank usually sees them, the healthy ones included, so they name no
# node; the job is requeued as it is and the next attempt's pre-flight check finds the bad node or link.
NETWORK_PATTERNS = (
    r"nccl(System|Remote|Internal)Error",
    r"NCCL error.*(unhandled system error|remote process|internal error)",
)
_DEVICE = re.compile("|".join(DEVICE_PATTERNS))
_NETWORK = re.compile("|".join(NETWORK_PATTERNS))
SCONTROL_TIMEOUT_S = (
    10  # each call; the other ranks of a hung job wait for the leader's requeue (watchdog.py)
)


@dataclass(frozen=True)
class NodeFault:
    """A failure that is the machine's, not the code's. kind: "device" (this rank's GPU: exclude its node) or
    "network" (between ranks: no node named). line: the error's line that says so (at most 300 characters)."""

    kind: str
    line: str


def hardware_fault(error: BaseException) -> NodeFault | None:
    """What `error` (or an error it was raised from) says of the machine, or None for an error of the code."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        for kind, pattern in (("device", _DEVICE), ("network", _NETWORK)):
            match = pattern.search(text)
            if match:
                line = next(part for part in text.splitlines() if match.group(0) in part)
                return NodeFault(kind, " ".join(line.split())[:300])
        current = current.__cause__ or current.__context__
    return None


def requeue_after_fault(
    nodes: Iterable[str], reason: str, output_dir: str | Path, max_requeues: int
) -> str | None:
    """Requeue this Slurm job after a fault of the machine, with `nodes` added to its excluded nodes (none: requeued
    as it is, e.g. after a network error that names no node), up to `max_requeues` restarts.

    Returns the sentence to add to the job's error ("job 12 requeued excluding node2 ...") when the job was requeued,
    else None after printing why not (not a Slurm job, restarts used up, too few nodes left in the partition, scontrol
    refused: e.g. another rank requeued it first). Records a `requeued_after_fault` (or `not_requeued`) event in the
    run folder's slurm_events.jsonl. Never raises: it runs while a job is failing.
    """
    bad = sorted({n for n in nodes if n})
    job_id = events.slurm_job_id()
    if job_id is None:
        return None
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    away = f" away from {','.join(bad)}" if bad else ""

    def refuse(why: str) -> None:
        print(f"normia: not requeued{away}: {why}", flush=True)
        events.record(output_dir, "not_requeued", reason=why, nodes=bad)

    if restarts >= max_requeues:
        refuse(f"already restarted {restarts} times (launcher.max_requeues={max_requeues})")
        return None
    if not bad:
        failed = _scontrol("requeue", job_id)
        if failed:
            refuse(f"scontrol requeue {job_id}: {failed}")
            return None
        events.record(output_dir, "requeued_after_fault", nodes=[], excluded=[], reason=reason[:500])
        return (
            f"job {job_id} requeued (restart {restarts + 1} of at most {max_requeues}; no node named: the next "
            "attempt's pre-flight check looks for it); it resumes from the last checkpoint"
        )
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
    # one shell for the three: the requeue signals this process, which must not leave the job held (slurm_commands)
    messages = scontrol_steps(
        [["requeuehold", job_id], ["update", f"JobId={job_id}", f"ExcNodeList={','.join(excluded)}"],
         ["release", job_id]],
        timeout_s=3 * SCONTROL_TIMEOUT_S,
    )  # fmt: skip
    held = messages[0]
    if held:
        refuse(f"scontrol requeuehold {job_id}: {held}")
        return None
    updated, released = [*messages[1:], "not run", "not run"][:2]
    if released:
        print(
            f"normia: scontrol release {job_id} failed ({released}): release it by hand to resume", flush=True
        )
    if updated:
        print(
            f"normia: the exclusion of {','.join(bad)} was refused ({updated}); requeued as it was",
            flush=True,
        )
    events.record(output_dir, "requeued_after_fault", nodes=bad, excluded=excluded, reason=reason[:500])
    where = f"excluding {','.join(bad)}" if not updated else "(exclusion refused)"
    return (
        f"job {job_id} requeued {where} (restart {restarts + 1} of at most {max_requeues}); it resumes from the "
        "last checkpoint"
    )


def _scontrol(*args: str) -> str:
    return scontrol(*args, timeout_s=SCONTROL_TIMEOUT_S)


def _show_job(job_id: str) -> dict[str, str] | None:
    """`scontrol show job -o` as KEY=VALUE pairs (values without spaces; enough for the keys read here)."""
    out = slurm_output(["scontrol", "show", "job", "-o", job_id], SCONTROL_TIMEOUT_S)
    if out is None:
        return None
    first = out.splitlines()[0] if out.strip() else ""
    return dict(pair.split("=", 1) for pair in first.split() if "=" in pair)


def _hostnames(expression: str) -> list[str]:
    """node[1-3],gpu7 -> [node1, node2, node3, gpu7], through Slurm's own expansion."""
    if not expression or expression == "(null)":
        return []
    out = slurm_output(["scontrol", "show", "hostnames", expression], SCONTROL_TIMEOUT_S)
    return out.split() if out is not None else [expression]


def _partition_nodes(partition: str) -> list[str] | None:
    """The nodes of `partition` that are up (not down, drained or failing); None when sinfo cannot say."""
    if not partition:
        return None
    command = ["sinfo", "-h", "-N", "-p", partition, "-t", "idle,mix,alloc,completing", "-o", "%N"]
    out = slurm_output(command, SCONTROL_TIMEOUT_S)
    return sorted(set(out.split())) if out is not None else None


def tag_requeues(trackers: list[Any], output_dir: str | Path) -> None:
    """Rank 0 of a requeued attempt, once the MLflow run is reopened: the last fault that requeued the job as the tag
    normia.requeued_after and the nodes every earlier attempt excluded as normia.excluded_nodes (from
    slurm_events.jsonl). Whatever requeued it (a hang, a GPU or NCCL error on any rank, the pre-flight check), the
    run says it here."""
    requeues = [e for e in events.read(output_dir) if e.get("event") == "requeued_after_fault"]
    if not requeues:
        return
    nodes = ",".join(sorted({n for e in requeues for n in e.get("nodes", [])}))
    for tracker in trackers:
        client, run_id = getattr(tracker, "experiment", None), getattr(tracker, "version", None)
        if client is None or not run_id or not hasattr(client, "set_tag"):
            continue
        try:
            client.set_tag(run_id, "normia.requeued_after", str(requeues[-1].get("reason", ""))[:5000])
            if nodes:
                client.set_tag(run_id, "normia.excluded_nodes", nodes)
        except Exception as err:  # a record, not the training
            print(f"warning: the requeue was not recorded in MLflow run {run_id}: {err}", file=sys.stderr)
