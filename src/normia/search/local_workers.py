"""Local workers: K `python -m normia.search.worker` processes on this machine, each with its share of the cores
and its log in <search folder>/worker-<i>.log, followed (each trial printed as it ends) until they all exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_local(plan: Any, plan_path: Path, workers: int, sha256: str | None = None) -> int:
    """K worker processes (logs in worker-<i>.log), following the study until they all exit; 130 on Ctrl-C. Each
    gets the plan's sha256 (it refuses a plan that differs)."""
    procs = []
    for index in range(workers):
        log = open(Path(plan.search_dir) / f"worker-{index}.log", "a")  # noqa: SIM115 (closed below)
        argv = [sys.executable, "-m", "normia.search.worker", str(plan_path), "--index", str(index)]
        proc = subprocess.Popen(
            [*argv, *(["--sha256", sha256] if sha256 else [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env(workers),
        )
        procs.append((proc, log))
        print(f"  worker {index}: pid {proc.pid}, log {log.name}", flush=True)
    try:
        follow(plan, lambda: all(p.poll() is not None for p, _ in procs))
    except KeyboardInterrupt:
        for proc, _ in procs:
            try:
                proc.wait(
                    timeout=60
                )  # the workers got the Ctrl-C too: they stop their trial and queue it again
            except subprocess.TimeoutExpired:
                proc.kill()
        return 130
    finally:
        for _, log in procs:
            log.close()
    codes = [p.returncode for p, _ in procs]
    for index, code in enumerate(codes):
        if code != 0:
            print(f"  worker {index} exited with code {code} (see worker-{index}.log)", file=sys.stderr)
    return 0


def _worker_env(workers: int) -> dict[str, str]:
    """The workers' environment: without OMP_NUM_THREADS set by the user, each gets its share of the cores (K
    processes with all cores' threads each oversubscribe the CPU: measured 45x slower on 2 cores)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


def follow(plan: Any, done: Any, poll_s: float = 2.0) -> None:
    """Print each trial as it ends, until done() is true."""
    import optuna

    from normia.search.storage import open_storage

    study = optuna.load_study(study_name=plan.study_name, storage=open_storage(plan.storage))
    seen: set[int] = set()
    while True:
        finished = done()
        for t in study.get_trials(deepcopy=False):
            if t.number in seen or t.state.name in ("RUNNING", "WAITING"):
                continue
            seen.add(t.number)
            value = f" {plan.monitor}={t.value:.4f}" if t.value is not None else ""
            print(f"  trial {t.number}: {t.state.name}{value}", flush=True)
        if finished:
            return
        time.sleep(poll_s)


def worker_env(workers: int) -> dict[str, str]:
    """The workers' environment: without OMP_NUM_THREADS set by the user, each gets its share of the cores (K
    processes with all cores' threads each oversubscribe the CPU: measured 45x slower on 2 cores)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env
