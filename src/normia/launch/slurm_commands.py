"""Slurm's command-line tools, called the one way normia needs: a bounded wait, and no exception out of a call that
runs while a job is being submitted, checked or failing (a missing or hung tool is an answer, not a crash)."""

from __future__ import annotations

import subprocess


def slurm_output(command: list[str], timeout_s: float) -> str | None:
    """The command's standard output, or None when it is missing, times out or exits non-zero."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def scontrol(*args: str, timeout_s: float) -> str:
    """Run `scontrol args`: '' on success, else its message (one line, at most 300 characters). SIGTERM is ignored
    in scontrol: once a job is requeued Slurm signals every process of it, and a killed `update` or `requeue` would be
    reported failed though the controller took it (seen on the tests' cluster)."""
    command = ["sh", "-c", 'trap "" TERM; exec scontrol "$@"', "scontrol", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return "" if done.returncode == 0 else " ".join((done.stderr or done.stdout).split())[:300] or "failed"
