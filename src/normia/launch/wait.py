"""Follow submitted jobs through sacct until they end (requeues included), and put a failed job's error text in
front of the user instead of leaving it in a log file on the cluster."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

# States after which a job does not run again (a requeued job goes back to PENDING instead).
FINAL_STATES = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
)
USER_ERROR = "normia.errors.UserError: "


def job_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, exit code)} as sacct reports the latest run of each job (array tasks as 12_3)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1].split()[0], parts[2])
    return states


def _final(state: str) -> bool:
    return state.split()[0] in FINAL_STATES


def queued_ids() -> set[str]:
    """Jobs slurmctld still holds (pending, running, completing), array tasks expanded (12_3)."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30, check=False
    )
    return set(out.stdout.split())


def wait_for(
    job_ids: list[str], poll_s: float = 1.0, timeout_s: float | None = None
) -> dict[str, tuple[str, str]]:
    """Block until every job reached a final state; returns their last states. An array task cancelled before it
    started never gets an accounting record: once it is neither queued nor in sacct (3 polls in a row, to allow for
    slurmdbd's lag) it is reported as CANCELLED."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    missing_polls: dict[str, int] = {}
    while True:
        states = job_states(job_ids)
        absent = [j for j in job_ids if j not in states]
        if absent:
            queued = queued_ids()
            for job in absent:
                missing_polls[job] = missing_polls.get(job, 0) + 1 if job not in queued else 0
                if missing_polls[job] >= 3:
                    states[job] = ("CANCELLED", "never started")
        if len(states) >= len(job_ids) and all(_final(s) for s, _ in states.values()):
            return states
        if deadline is not None and time.monotonic() > deadline:
            return states
        time.sleep(poll_s)


def error_excerpt(log_folder: Path, job_id: str, max_lines: int = 12, max_tasks: int = 4) -> str:
    """The last Python traceback of each task log that has one (the failing rank and what it did to the others),
    else the Slurm error lines (srun: error: ...)."""
    parts = []
    logs = sorted(log_folder.glob(f"{job_id}_*_log.err"), key=_task_number)
    for path in logs:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
        if starts:
            block = lines[starts[-1] :]
            user_error = next((ln for ln in reversed(block) if ln.startswith(USER_ERROR)), None)
            if user_error:  # a refusal on the node: its one line says it all
                parts.append(f"--- {path}\nerror: {user_error[len(USER_ERROR) :]}")
            else:
                block = [line for line in block if not line.startswith(("submitit ", "srun: "))][-max_lines:]
                parts.append(f"--- {path}\n" + "\n".join(block))
        if len(parts) >= max_tasks:
            break
    if not parts:
        for path in logs:
            errors = [
                line for line in path.read_text(errors="replace").splitlines() if "error:" in line.lower()
            ]
            if errors:
                parts.append(f"--- {path}\n" + "\n".join(errors[-max_lines:]))
    return "\n".join(parts)


def _task_number(path: Path) -> int:
    try:
        return int(path.name.split("_")[-2])
    except (IndexError, ValueError):
        return 0
