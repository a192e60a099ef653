"""A hung rank ends the job within the limit plus a margin, named with its host, with every rank's stacks, the MLflow
run FAILED and no process left (issue 23). Fault injection through tests/train/probes.py's HangAtStep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normia.training.watchdog import (
    HANG_EXIT_CODE,
    STEP_FACTOR,
    HangWatchdog,
    blamed_nodes,
    culprits,
    describe,
)

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 4
QUICK = [
    "experiment=quickstart",
    "trainer.enable_progress_bar=false",
    "logger.system_metrics=false",
    "trainer.max_epochs=-1",
    "trainer.max_steps=400",
    "trainer.log_every_n_steps=2",
    f"trainer.hang_timeout_s={TIMEOUT_S}",
    "trainer.hang_first_timeout_s=120",
]


def run_hanging(
    workdir: Path, *overrides: str, timeout_s: float = 400
) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "normia.cli", "train", *QUICK, *overrides],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    return proc, time.time()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def the_run(workdir: Path) -> tuple[Path, dict]:
    from mlflow import MlflowClient

    (folder,) = (workdir / "outputs" / "quickstart").iterdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    return folder, {"status": run.info.status, **run.data.tags}


@pytest.mark.slow
def test_one_hung_rank_ends_the_ddp_job_and_is_named(workdir: Path) -> None:
    probe = workdir / "probe"
    proc, ended = run_hanging(
        workdir, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "+callbacks.hang._target_=probes.HangAtStep", "+callbacks.hang.step=5", f"+callbacks.hang.out_dir={probe}",
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == HANG_EXIT_CODE, out[-4000:]
    hung_at = float((probe / "hung-rank1").read_text())
    assert ended - hung_at <= TIMEOUT_S + 30, ended - hung_at  # the goal: limit + 30 s
    errors = [line for line in out.splitlines() if line.startswith("error: training hung")]
    assert len(errors) == 1, out[-4000:]
    assert f"rank 1 on {socket.gethostname()} (pid " in errors[0] and "did not arrive" in errors[0], errors[0]
    assert "probes.py" in errors[0]  # where it was
    assert "rank 0 on" not in errors[0]
    folder, run = the_run(workdir)
    for rank in (0, 1):
        stacks = (folder / "hang" / f"rank-{rank}.txt").read_text()
        assert json.loads(stacks.splitlines()[0])["rank"] == rank and 'File "' in stacks
    assert json.loads((folder / "hang.json").read_text())["culprits"][0]["rank"] == 1
    # torch's flight recorder, one file per rank: rank 0 entered a collective that rank 1 never reached
    import pickle

    entries = [
        pickle.loads((folder / "hang" / "flight_recorder" / f"rank_{r}").read_bytes())["entries"]
        for r in (0, 1)
    ]
    assert entries[1] and len(entries[0]) > len(entries[1]), [len(e) for e in entries]
    assert run["status"] == "FAILED" and "rank 1 on" in run["normia.failure"]
    for pid_file in probe.glob("rank*.pid"):
        assert not alive(int(pid_file.read_text())), f"{pid_file.name}: a rank is still running"


def test_a_stall_in_a_single_process_run_is_ended(workdir: Path) -> None:
    probe = workdir / "probe"
    proc, _ = run_hanging(
        workdir, "+callbacks.hang._target_=probes.HangAtStep", "+callbacks.hang.step=3", "+callbacks.hang.rank=0",
        f"+callbacks.hang.out_dir={probe}",
    )  # fmt: skip
    assert proc.returncode == HANG_EXIT_CODE, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stderr.count("error: training hung: no progress at ") == 1, proc.stderr[-3000:]
    folder, run = the_run(workdir)
    assert run["status"] == "FAILED" and (folder / "hang" / "rank-0.txt").is_file()


def report(rank: int, progress: int, in_collective: bool = False) -> dict:
    return {"rank": rank, "host": f"node{rank}", "pid": 100 + rank, "progress": progress, "phase": "p",
            "where": "w", "waited_s": 5.0, "limit_s": 4.0, "in_collective": in_collective}  # fmt: skip


def test_culprits_are_the_ranks_behind_or_outside_the_collective_or_silent() -> None:
    assert [c["rank"] for c in culprits([report(0, 30), report(1, 27), report(2, 30)], 3)] == [1]
    # same point: the rank blocked in a collective waits for the one that is not
    assert [c["rank"] for c in culprits([report(0, 30, True), report(1, 30, False)], 2)] == [1]
    # a rank that wrote nothing (frozen outside Python) is the one to blame
    assert [c["rank"] for c in culprits([report(0, 30), report(2, 30)], 3)] == [1]
    # every rank at the same point, none in a collective: a stall shared by all
    shared = describe([report(0, 9), report(1, 9)], 2, Path("/run/hang"))
    assert "every rank stopped at the same point" in shared and "/run/hang" in shared


def test_only_a_hang_pinned_on_some_ranks_blames_their_nodes() -> None:
    reports = [report(0, 30), report(1, 27), report(2, 30)]
    assert blamed_nodes(culprits(reports, 3), 3) == ["node1"]
    # a silent rank is placed on its node by the map gathered at setup, and named in the error line
    silent = culprits([report(0, 30), report(2, 30)], 3, ["a", "b", "c"])
    assert blamed_nodes(silent, 3) == ["b"]
    assert "rank 1 on b did not arrive" in describe(
        [report(0, 30), report(2, 30)], 3, Path("/h"), ["a", "b", "c"]
    )
    # without the map the silent rank's node is unknown: nothing to exclude
    assert blamed_nodes(culprits([report(0, 30), report(2, 30)], 3), 3) == []
    # every rank stalled at the same point (data, a file system), or the only rank: no node to blame
    assert blamed_nodes(culprits([report(0, 9), report(1, 9)], 2), 2) == []
    assert blamed_nodes(culprits([report(0, 9)], 1), 1) == []


def test_the_limit_is_generous_until_two_steps_then_follows_the_step_time() -> None:
    dog = HangWatchdog("/tmp/unused", timeout_s=10, first_timeout_s=600)
    assert dog.limit_s() == 600
    dog.steps_done, dog.slow = 2, False
    dog.step_times.extend([0.1, 0.2, 0.1])
    assert dog.limit_s() == 10  # 20 x 0.1 s < the floor
    dog.step_times.extend([2.0] * 10)
    assert dog.limit_s() == STEP_FACTOR * 2.0
    dog.mark("writing a checkpoint", slow=True)
    assert dog.limit_s() == 600


@pytest.mark.parametrize("override", ["trainer.hang_timeout_s=0", "trainer.hang_first_timeout_s=-5"])
def test_a_non_positive_limit_is_refused_before_anything_runs(
    workdir: Path, normia_cli, override: str
) -> None:
    proc = normia_cli("train", "experiment=quickstart", override, cwd=workdir)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {override} must be a positive number of seconds")
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()
