"""Shared test helpers: an isolated working directory (its own mlflow.db and outputs/) and a CLI runner."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The suite's own test doubles (callbacks that stop, crash or probe a run) are code a config may name in tests
# only; every normia process started by a test inherits this (config/trust.py).
os.environ.setdefault("NORMIA_TRUSTED_TARGETS", "faults.,probes.,stop_at_step.")
# The data digest manifest of the suite's processes: its own, not the user's ~/.cache (removed at the end).
_DIGESTS = tempfile.mkdtemp(prefix="normia-test-digests-")
os.environ.setdefault("NORMIA_DIGEST_CACHE", os.path.join(_DIGESTS, "digests.json"))
atexit.register(shutil.rmtree, _DIGESTS, True)


@pytest.fixture(autouse=True)
def _project_state_restored() -> Iterator[None]:
    """A test that composes inside a project activates it in this process (normia.project.activate: sys.path,
    PYTHONPATH, NORMIA_CONFIG_PATH): put all three back, and forget the modules imported from the folders it added to
    sys.path, so that the next test (and the processes it starts) sees no project it did not make."""
    saved_path = list(sys.path)
    saved_env = {k: os.environ.get(k) for k in ("PYTHONPATH", "NORMIA_CONFIG_PATH")}
    saved_modules = set(sys.modules)
    yield
    added = [p for p in sys.path if p and p not in saved_path]  # a project's src/ put first by activate()
    sys.path[:] = saved_path
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    # Only the project's own modules: a library's C extension (torch, triton) cannot be imported a second time.
    for name in set(sys.modules) - saved_modules:
        origin = str(getattr(sys.modules.get(name), "__file__", "") or "")
        if any(origin.startswith(folder.rstrip(os.sep) + os.sep) for folder in added):
            del sys.modules[name]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = a fresh folder, so MLflow's default sqlite:///mlflow.db and outputs/ land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NORMIA_OUTPUT_ROOT", raising=False)
    return tmp_path


def run_normia(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (exit codes, stderr, no state shared with the test process)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NORMIA_OUTPUT_ROOT")}
    full_env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "normia.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Overrides that keep a training test short on 2 CPU cores.
FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]


@pytest.fixture
def normia_cli():
    """The run_normia function, for tests in any folder (conftest modules are not importable by name)."""
    return run_normia


@pytest.fixture
def fast_overrides() -> list[str]:
    return list(FAST)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on loopback (its own sqlite store and artifact folder), stopped after the test."""
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    log = open(store / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (store / "server.log").read_text()
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
