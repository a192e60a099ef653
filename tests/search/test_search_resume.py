"""Resume: the search is killed (SIGKILL: its workers mid-trial, as a preemption would), the same command is run
again and finishes the study with exactly N finished trials: each killed trial is FAIL with the reason, its MLflow
run closed, its parameters run again once, nothing counted twice. Then a changed space on the same study is refused,
listing the differences, with nothing written."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from search_helpers import QUIET, states, study_trials

N = 4
STUDY = "quickstart-resume"
SPACE = """params:
  optim.lr: {type: log-float, low: 1.0e-3, high: 3.0e-2}
pruner: none
sampler: random
"""
ARGS = [
    "experiment=quickstart",
    "search=resume",
    f"n_trials={N}",
    "workers=2",
    "trainer.max_epochs=4",
    *QUIET,
]


def _env(space_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NORMIA_OUTPUT_ROOT")}
    env.update({"NORMIA_CONFIG_PATH": str(space_dir), "PYTHONUNBUFFERED": "1"})
    return env


def _worker_pids(log: Path) -> list[int]:
    """The workers' pids, from the search's own lines ("worker 0: pid 6148, log ...")."""
    return [int(m) for m in re.findall(r"worker \d+: pid (\d+)", log.read_text())]


def _wait_until_gone(pids: list[int], timeout_s: float = 30.0) -> None:
    """Until each process has exited (a zombie counts as gone: it runs no more code)."""
    from normia.search.claim import _process_alive

    deadline = time.monotonic() + timeout_s
    while any(_process_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} still alive {timeout_s:g} s after SIGKILL"
        time.sleep(0.05)


def _kill_mid_trial(workdir: Path, space_dir: Path) -> list[int]:
    """Start the search, wait until a trial has finished and another is training, then SIGKILL the search and its
    workers (one process group). Returns the numbers of the trials that were running."""
    search_dir = workdir / "outputs" / "search" / STUDY
    log = open(workdir / "first.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "normia.cli", "search", *ARGS],
        cwd=workdir,
        env=_env(space_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, (workdir / "first.log").read_text()[-3000:]
            if (search_dir / "study.journal").is_file():
                trials = study_trials(search_dir, STUDY)
                running = [t for t in trials if t.state.name == "RUNNING"]
                training = [
                    t for t in running if (search_dir / f"trial-{t.number:04d}" / "config.yaml").is_file()
                ]
                if states(trials).get("COMPLETE", 0) >= 1 and training:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                    # proc.wait() waits for the search process only: its workers, killed too, may still be
                    # finishing a journal write. Read once every one of them is gone.
                    pids = _worker_pids(workdir / "first.log")
                    assert pids, (workdir / "first.log").read_text()
                    _wait_until_gone(pids)
                    # read again: a trial may have ended or begun between that look and the kill
                    after = study_trials(search_dir, STUDY)
                    return [t.number for t in after if t.state.name == "RUNNING"]
            time.sleep(0.2)
        pytest.fail("no trial was caught mid-training")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return []


@pytest.mark.slow
def test_killed_search_resumes_to_exactly_n_trials(workdir: Path, space_dir: Path, normia_cli) -> None:
    (space_dir / "search" / "resume.yaml").write_text(SPACE)
    killed = _kill_mid_trial(workdir, space_dir)
    assert killed
    search_dir = workdir / "outputs" / "search" / STUDY
    before = study_trials(search_dir, STUDY)
    assert states(before).get("COMPLETE", 0) < N  # the study was not done when it was killed

    result = normia_cli("search", *ARGS, cwd=workdir, env={"NORMIA_CONFIG_PATH": str(space_dir)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resuming study '{STUDY}'" in result.stdout
    trials = study_trials(search_dir, STUDY)
    by_state = states(trials)
    assert by_state.get("COMPLETE", 0) == N, by_state  # pruner none: every finished trial is COMPLETE
    assert by_state.get("RUNNING", 0) == 0 and by_state.get("WAITING", 0) == 0
    failed = {t.number: t for t in trials if t.state.name == "FAIL"}
    assert set(killed) == set(failed), (killed, by_state)
    for trial in failed.values():
        assert "its worker died mid-trial" in trial.user_attrs["search.fail_reason"]
    retries = {t.user_attrs["search.retry_of"]: t for t in trials if "search.retry_of" in t.user_attrs}
    assert set(retries) == set(killed)  # each killed trial's parameters ran again, once
    for number, retry in retries.items():
        assert retry.params == failed[number].params and retry.state.name == "COMPLETE"

    fresh = [t.params["optim.lr"] for t in trials if "search.retry_of" not in t.user_attrs]
    # the resumed workers did not draw the first run's points again
    assert len(set(fresh)) == len(fresh), fresh

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    for trial in failed.values():
        run_id = trial.user_attrs.get("search.run_id")
        if run_id:  # killed after its MLflow run began: closed as KILLED, tagged FAIL
            run = client.get_run(run_id)
            assert run.info.status == "KILLED" and run.data.tags["search.state"] == "FAIL"

    # the same study with another space: refused, the differences listed, nothing written
    (space_dir / "search" / "resume.yaml").write_text(
        SPACE.replace("high: 3.0e-2}", "high: 1.0e-1}\n  model.dropout: {type: float, low: 0.0, high: 0.3}")
    )
    journal = (search_dir / "study.journal").stat().st_size
    files = sorted(p.name for p in search_dir.iterdir())
    from normia.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["search", *ARGS])
    assert code == 2
    line = err.getvalue().strip()
    assert line.count("\n") == 0, line
    assert "another search space" in line
    assert "optim.lr: log-float 0.001..0.03 -> log-float 0.001..0.1" in line
    assert "added model.dropout" in line
    assert (search_dir / "study.journal").stat().st_size == journal
    assert sorted(p.name for p in search_dir.iterdir()) == files
