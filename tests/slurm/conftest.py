"""A real two-node Slurm cluster for the launcher tests, started once per session by tests/slurm/cluster.sh.

If a cluster is already up in the state directory (started by hand or by CI), it is used and left running;
otherwise the fixture starts one and stops it (only its own daemons, by pid file) at the end of the session.
Tests that need it skip with the reason when this machine cannot run one (not root, no Debian packages/apt).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_health import heal

CLUSTER_SH = Path(__file__).with_name("cluster.sh")
STATE_DIR = Path(os.environ.get("NORMIA_SLURM_DIR", "/tmp/normia-slurm"))


def _cannot_run_reason() -> str | None:
    """Why this machine cannot host the test cluster, or None when it can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "the local Slurm cluster needs Linux"
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root (it starts munged, slurmd and MariaDB)"
    have_slurm = all(shutil.which(b) for b in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd"))
    if not have_slurm and not (shutil.which("apt-get") and shutil.which("dpkg-query")):
        return "Slurm is not installed and there is no apt-get to install it (Debian/Ubuntu only)"
    return None


def _run(action: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), action, str(STATE_DIR)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """Yield the slurm.conf of a running 2-node cluster; SLURM_CONF is exported for the whole session."""
    reason = _cannot_run_reason()
    if reason:
        pytest.skip(reason)
    already_up = _run("status", timeout=30).returncode == 0
    if not already_up:
        started = _run("start", timeout=300)
        if started.returncode != 0:
            pytest.fail(f"could not start the local Slurm cluster:\n{started.stderr[-3000:]}")
    conf = STATE_DIR / "etc" / "slurm.conf"
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield conf
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if not already_up:
            _run("stop", timeout=60)


@pytest.fixture(autouse=True)
def _cluster_in_service(request: pytest.FixtureRequest) -> Iterator[None]:
    """Around each test on the cluster: a node out of service or a job left queued is reported (terminal and
    STATE_DIR/log/health.log) and repaired, so one broken node costs one test, not every later one (stop 33)."""
    if "slurm_cluster" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("slurm_cluster")
    _report(request, "before", heal(STATE_DIR, CLUSTER_SH))
    yield
    _report(request, "after", heal(STATE_DIR, CLUSTER_SH))


def _report(request: pytest.FixtureRequest, when: str, lines: list[str]) -> None:
    if not lines:
        return
    text = "\n".join([f"slurm cluster health {when} {request.node.nodeid}:", *lines])
    with (STATE_DIR / "log" / "health.log").open("a") as f:
        f.write(text + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + text)
