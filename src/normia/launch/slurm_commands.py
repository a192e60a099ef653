"""Slurm's command-line tools, called the one way normia needs: a bounded wait, and no exception out of a call that
runs while a job is being submitted, checked or failing (a missing or hung tool is an answer, not a crash)."""

from __future__ import annotations

import shlex
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


def scontrol_steps(steps: list[list[str]], timeout_s: float, gate: int = 1) -> list[str]:
    """Run `scontrol step` for each step in ONE shell that ignores SIGTERM; a failure of one of the first `gate`
    steps stops the sequence, later ones do not (a job once held is always released). Returns each step's message
    ('' on success) for the steps that ran.

    Why one shell: `scontrol requeuehold` makes Slurm signal every process of the job, the Python process that
    asked included. If it dies before its next call, a job held for an update is never released (seen on the tests'
    cluster: held for ever). The shell, with SIGTERM ignored (inherited by scontrol), runs the whole sequence
    whatever happens to its parent."""
    lines = ['trap "" TERM']
    for index, step in enumerate(steps):
        command = " ".join(shlex.quote(a) for a in ["scontrol", *step])
        lines.append(f'out=$({command} 2>&1); rc=$?; printf "%s\\t%s\\t%s\\n" {index} "$rc" "$(echo $out)"')
        if index < gate:
            lines.append('[ "$rc" -eq 0 ] || exit 0')
    try:
        done = subprocess.run(
            ["sh", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return [str(err)]
    messages = []
    for line in done.stdout.splitlines():
        _, rc, out = [*line.split("\t", 2), "", ""][:3]
        messages.append("" if rc == "0" else (out.strip()[:300] or "failed"))
    return messages or [" ".join(done.stderr.split())[:300] or "failed"]
