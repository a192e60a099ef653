"""Taking the next trial exactly once, with K workers on one study.

Optuna's MaxTrialsCallback stops a worker after a trial ends, so K workers that start together can overshoot N by
K-1; and Optuna's heartbeat (which fails the RUNNING trial of a dead worker) exists only for RDB storages. Here a
worker claims a trial under an exclusive lock on <search folder>/claim.lock (fcntl, released by the kernel when a
worker dies; works on a shared filesystem): inside it, the RUNNING trials of dead workers are marked FAIL and their
parameters re-queued once, then a trial is created only if COMPLETE + PRUNED + RUNNING < N. So the study ends with
exactly N finished trials, and a preempted worker's trial is re-run, never lost or counted twice.

A worker is `host:pid` (plus `:slurm=<job id>` in a Slurm task); it is dead when it ran on this host and its process
is gone (or a zombie), or when its Slurm job is no longer in squeue.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WORKER_ATTR = "search.worker"
RETRY_ATTR = "search.retry_of"
REASON_ATTR = "search.fail_reason"
LOCK = "claim.lock"


def worker_id() -> str:
    """This process as a worker: 'host:pid' or 'host:pid:slurm=<job id>'."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    job = os.environ.get("SLURM_JOB_ID")
    return f"{base}:slurm={job}" if job else base


@contextlib.contextmanager
def claim_lock(search_dir: str | Path) -> Iterator[None]:
    """An exclusive lock shared by every worker of the search (blocking)."""
    path = Path(search_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_alive(worker: str) -> bool:
    """False only when this worker is known to be gone; a worker elsewhere that cannot be checked counts as alive."""
    host, _, rest = worker.partition(":")
    pid_text, _, slurm = rest.partition(":slurm=")
    if host == socket.gethostname() and pid_text.isdigit():
        return _process_alive(int(pid_text))
    if slurm and shutil.which("squeue"):
        try:
            out = subprocess.run(
                ["squeue", "-h", "-j", slurm, "-o", "%T"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return True
        return out.returncode == 0 and bool(out.stdout.strip())
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def requeue_dead(
    study: Any, tracking_uri: str | None = None, reason: str = "its worker died mid-trial"
) -> list[int]:
    """Mark the RUNNING trials of dead workers FAIL (with the reason) and queue their parameters again, once per
    original trial; their MLflow runs (when they got one) end KILLED with search.state=FAIL. Returns the numbers of
    the trials failed. Call under claim_lock."""
    from optuna.trial import Trial, TrialState

    failed = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = frozen.user_attrs.get(WORKER_ATTR)
        if not worker or is_alive(str(worker)):
            continue
        Trial(study, frozen._trial_id).set_user_attr(REASON_ATTR, f"{reason} ({worker})")
        study.tell(frozen.number, state=TrialState.FAIL)
        failed.append(frozen.number)
        _close_run(tracking_uri, frozen.user_attrs.get("search.run_id"))
        if RETRY_ATTR not in frozen.user_attrs and frozen.params:
            study.enqueue_trial(frozen.params, user_attrs={RETRY_ATTR: frozen.number}, skip_if_exists=False)
    return failed


def _close_run(tracking_uri: str | None, run_id: str | None) -> None:
    if not tracking_uri or not run_id:
        return
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        client.set_tag(run_id, "search.state", "FAIL")
        client.set_terminated(run_id, status="KILLED")
    except Exception as err:  # the study is right either way; the run's status is only a note
        print(f"warning: could not close MLflow run {run_id}: {err}", flush=True)


def counts(study: Any) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, RUNNING, FAIL, WAITING)."""
    out: dict[str, int] = {}
    for frozen in study.get_trials(deepcopy=False):
        out[frozen.state.name] = out.get(frozen.state.name, 0) + 1
    return out


def claim_next(
    study: Any, search_dir: str | Path, n_trials: int, max_failures: int, tracking_uri: str | None = None
) -> Any | None:
    """A new RUNNING optuna.Trial owned by this worker, or None when the study has (or is running) its N trials,
    or has failed max_failures times."""
    with claim_lock(search_dir):
        for number in requeue_dead(study, tracking_uri):
            print(
                f"trial {number}: its worker died mid-trial; marked FAIL, its parameters queued again",
                flush=True,
            )
        by_state = counts(study)
        finished = by_state.get("COMPLETE", 0) + by_state.get("PRUNED", 0)
        if finished + by_state.get("RUNNING", 0) >= n_trials:
            return None
        if max_failures and by_state.get("FAIL", 0) >= max_failures:
            return None
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, worker_id())
        return trial
