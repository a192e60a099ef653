"""The local Slurm cluster behaves like a real one: submitit jobs run, ranks are right, sacct sees cancels.

If these fail, every launcher test would fail for reasons that have nothing to do with normia.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

# Functions below are sent to the nodes by value: the test module is not importable there.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _add(a: int, b: int) -> int:
    return a + b


def _where_am_i() -> dict[str, str]:
    keys = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES")
    return {k: os.environ.get(k, "") for k in keys}


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _executor(folder: Path, **params: object) -> submitit.SlurmExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_partition="debug", **params)
    return executor


def test_submitit_job_runs_and_is_accounted(tmp_path: Path) -> None:
    job = _executor(tmp_path).submit(_add, 2, 3)
    assert job.result() == 5
    sacct = ["sacct", "-n", "-X", "-j", job.job_id, "-o", "State"]
    out = subprocess.run(sacct, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["COMPLETED"]


def test_two_nodes_two_tasks_get_distinct_ranks_and_fake_gpus(tmp_path: Path) -> None:
    job = _executor(tmp_path, nodes=2, tasks_per_node=2, gpus_per_node=2).submit(_where_am_i)
    results = job.results()
    assert sorted(int(r["SLURM_PROCID"]) for r in results) == [0, 1, 2, 3]
    by_rank = {int(r["SLURM_PROCID"]): r for r in results}
    assert [by_rank[i]["SLURM_NODEID"] for i in range(4)] == ["0", "0", "1", "1"]
    assert [by_rank[i]["SLURM_LOCALID"] for i in range(4)] == ["0", "1", "0", "1"]
    assert {by_rank[i]["SLURMD_NODENAME"] for i in range(4)} == {"node1", "node2"}
    assert all(r["CUDA_VISIBLE_DEVICES"] == "0,1" for r in results)


def test_sacct_sees_a_cancelled_job(tmp_path: Path) -> None:
    job = _executor(tmp_path).submit(_sleep, 300)
    deadline = time.monotonic() + 60
    while job.state != "RUNNING":
        assert time.monotonic() < deadline, f"job never started: {job.state}"
        time.sleep(0.5)
    job.cancel()
    job._results_timeout_s = 1  # submitit waits 15 s for a result file a cancelled job never writes
    # submitit reads states through sacct; without accounting it would wait forever here.
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()
    assert job.state.startswith("CANCELLED")
