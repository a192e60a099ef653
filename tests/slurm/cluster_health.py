"""Keep the test cluster usable from one test to the next, and say loudly when it was not.

A node that Slurm marks down or drained (a slurmd that died, 'Kill task failed', 'batch job complete failure', 'Not
responding' on a loaded machine) stays so, and every later two-node job of the session waits for it until its test
times out: stop 33's CI lost 55 minutes that way with no word of why. Before and after each test that uses the cluster,
this names any such node with Slurm's reason and the lines of the daemons' logs about it, puts it back in service, and
cancels the jobs a test left in the queue. The report goes to the terminal (CI's log) and to STATE_DIR/log/health.log.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

BAD_STATES = ("down", "drain", "fail", "not_responding", "unknown", "inval")


def _slurm(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def unusable_nodes() -> dict[str, str]:
    """{node: 'STATE (reason)'} for the nodes Slurm will not give jobs; {} when all are usable."""
    out = _slurm("sinfo", "-h", "-N", "-o", "%N|%T|%E")
    if out.returncode != 0:
        return {"(sinfo)": f"sinfo failed (exit {out.returncode}): {out.stderr.strip()}"}
    bad: dict[str, str] = {}
    for line in out.stdout.splitlines():
        node, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        if any(s in state.lower() for s in BAD_STATES) or state.endswith("*"):
            bad[node] = f"{state} ({reason})"
    return bad


def queued_jobs() -> list[str]:
    """'id state reason' of every job still in the queue (pending, running, completing)."""
    out = _slurm("squeue", "-h", "-o", "%i %T %r")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _log_lines(path: Path, needle: str | None, count: int) -> list[str]:
    if not path.exists():
        return [f"({path} missing)"]
    lines = path.read_text(errors="replace").splitlines()
    if needle is not None:
        lines = [line for line in lines if needle in line]
    return lines[-count:]


def diagnose(state_dir: Path, bad: dict[str, str]) -> list[str]:
    """What the logs say about the unusable nodes: Slurm's reason, slurmctld's lines naming them, slurmd's tail."""
    log = state_dir / "log"
    report: list[str] = []
    for node, state in bad.items():
        pid_file = state_dir / "run" / f"slurmd-{node}.pid"
        alive = pid_file.exists() and _pid_alive(int(pid_file.read_text().strip() or 0))
        report.append(f"{node}: {state}; slurmd {'alive' if alive else 'NOT running'}")
        report += [f"  ctld| {line}" for line in _log_lines(log / "slurmctld.log", node, 12)]
        report += [f"  {node}| {line}" for line in _log_lines(log / f"slurmd-{node}.log", None, 12)]
    return report


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def heal(state_dir: Path, cluster_sh: Path, timeout_s: float = 90) -> list[str]:
    """Bring every node back to service; returns the report of what was wrong ([] when nothing was).

    Jobs left in the queue are cancelled first (a test's leftovers would hold the nodes of the next one), then a dead
    daemon restarts the whole cluster (cluster.sh start), a live node is resumed with scontrol."""
    report: list[str] = []
    left = queued_jobs()
    if left:
        report.append("jobs left in the queue, cancelled: " + "; ".join(left))
        _slurm("scancel", *[j.split()[0] for j in left])
    bad = unusable_nodes()
    if not bad:
        return report
    report += [
        "nodes out of service: " + ", ".join(f"{n} {s}" for n, s in bad.items()),
        *diagnose(state_dir, bad),
    ]
    status = _slurm("bash", str(cluster_sh), "status", str(state_dir))
    if status.returncode != 0:
        started = _slurm("bash", str(cluster_sh), "start", str(state_dir), timeout=300)
        report.append(
            f"a daemon was down: cluster restarted (exit {started.returncode}) {started.stderr[-300:]}"
        )
    else:
        for node in bad:
            if not node.startswith("("):
                _slurm("scontrol", "update", f"nodename={node}", "state=resume")
    deadline = time.monotonic() + timeout_s
    while (still := unusable_nodes()) and time.monotonic() < deadline:
        time.sleep(1)
    report.append(
        f"still out of service after {timeout_s:.0f} s: {still}" if still else "all nodes back in service"
    )
    return report
