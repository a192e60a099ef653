"""A small log of what happened to a job on Slurm (submitted, started, first step, signal, checkpoint, requeue,
resume), one JSON line each in <output_dir>/slurm_events.jsonl. It is how a user sees why a run restarted, and how
the tests measure submit-to-first-step latency, requeue-to-resume time and the steps lost per preemption."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "slurm_events.jsonl"


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` needs: <array job>_<task> for an array task, else the job id."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_id and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def record(output_dir: str | Path, event: str, **fields: Any) -> None:
    """Append one event (rank 0, or the rank that requeues a job after a fault); never fails the job over a log
    line."""
    line = {
        "event": event,
        "time": time.time(),
        "job_id": slurm_job_id(),
        "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
        **fields,
    }
    try:
        path = Path(output_dir) / EVENTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
    except OSError:
        pass


def read(output_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / EVENTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
