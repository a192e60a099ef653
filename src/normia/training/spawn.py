"""Local multi-process runs (trainer.devices > 1 on one machine): normia starts the ranks itself, each running
exactly one job. (Letting Lightning re-execute the command line would re-run a whole sweep in every rank.)
A rank that fails brings the others down at once instead of leaving them blocked in a collective.
The ranks run in their own process group, so Ctrl-C (from a terminal, or `kill -INT` of this process alone) is
delivered to each rank exactly once, by this process: the first asks every rank to stop at the same step and save,
the second aborts them. SIGTERM and SIGHUP are passed on as well, and a rank dies with this process (Linux): killing
this process, even with SIGKILL, leaves no rank running."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normia.errors import UserError
from normia.training.worker import CONFIG_FILE_ENV, PARENT_ENV

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_local_processes(cfg: DictConfig, nprocs: int) -> int:
    """Start nprocs ranks on this machine, wait for all; return 0, or the first failing rank's exit code."""
    port = free_port()
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    # The config (secrets included) reaches the ranks through files only this user can read, never through
    # their environment, which every process they start inherits and /proc/<pid>/environ shows.
    private = tempfile.mkdtemp(prefix="normia-ranks-")  # mode 0700
    procs: list[subprocess.Popen] = []
    # Installed before the first rank starts: a signal never finds a rank that this process cannot reach.
    forwarder = _Forwarder(procs)
    previous = {sig: signal.signal(sig, forwarder) for sig in FORWARDED}
    try:
        for rank in range(nprocs):
            procs.append(_start_rank(rank, nprocs, port, _config_file(private, rank, config_text)))
        return _wait(procs, forwarder)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _terminate(procs, grace_s=0.0)  # only ranks still running, after an error in this process
        shutil.rmtree(private, ignore_errors=True)


def _config_file(folder: str, rank: int, config_text: str) -> str:
    """The job's config for one rank, in a new 0600 file (the rank deletes it once read)."""
    path = os.path.join(folder, f"rank{rank}.yaml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(config_text)
    return path


def _start_rank(rank: int, nprocs: int, port: int, config_file: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        {
            CONFIG_FILE_ENV: config_file,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(nprocs),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
            "LOCAL_WORLD_SIZE": str(nprocs),
            PARENT_ENV: str(os.getpid()),
        }
    )
    # Own process group: a terminal's Ctrl-C reaches this process only, which forwards it once to each rank.
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    return subprocess.Popen([sys.executable, "-m", "normia.training.worker"], env=env, **group)


class _Forwarder:
    """The signal handler of this process: passes each signal on to every rank still running, and counts Ctrl-Cs
    (after a second one, the ranks' exits are an abort, not failures)."""

    def __init__(self, procs: list[subprocess.Popen]):
        self.procs = procs
        self.interrupts = 0

    def __call__(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
        for proc in self.procs:
            proc.send_signal(signum)  # a no-op for a rank that has already exited


# normia.training.health.TrainingDiverged.exit_code (not imported: that module imports Lightning)
DIVERGED = 3
# normia.training.watchdog.HANG_EXIT_CODE: a rank found the loop hung; the leading rank printed who and where
HUNG = 124


def _wait(procs: list[subprocess.Popen], forwarder: _Forwarder) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed and forwarder.interrupts >= 2:  # Ctrl-C twice: the ranks abort, whatever their exit codes
            _terminate(procs)
            return 130
        if failed and HUNG in codes:  # every rank that can still run Python is on its way out (a few s)
            _settle(procs, seconds=45.0)
            _terminate(procs)  # a rank frozen outside Python
            return HUNG
        if failed and DIVERGED not in codes:
            codes = _settle(procs, seconds=5.0)  # a rank that diverged may still be on its way out
        if DIVERGED in codes:  # every rank stops at the same step; rank 0 already said why
            _terminate(procs, grace_s=60.0)
            return DIVERGED
        if failed:
            rank, code = failed[0]
            if code in (130, 143):  # a graceful stop: let the other ranks finish writing the checkpoint
                _terminate(procs, grace_s=120.0)
                return code
            _terminate(procs)
            if code == 2:
                raise UserError(f"rank {rank} refused the job (see its error above)")
            raise UserError(
                f"rank {rank} failed with exit code {code}; the other ranks were stopped (see its log above)"
            )
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.2)


def _settle(procs: list[subprocess.Popen], seconds: float) -> list[int | None]:
    """Exit codes after waiting up to `seconds` for every rank to exit on its own."""
    deadline = time.monotonic() + seconds
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p.poll() for p in procs]


def _terminate(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM then SIGKILL; with a long grace the ranks are first given time to exit by themselves."""
    deadline = time.monotonic() + grace_s
    if grace_s > 30:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        deadline = time.monotonic() + 10.0
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
