"""Stragglers (issue 23): a rank whose own part of a step is slower than the others' is named, with its host,
after a few logging intervals; one small all-gather at logging steps only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from normia.training.stragglers import OwnTime, StragglerWatch

HERE = Path(__file__).resolve().parent


def test_a_rank_slow_for_patience_intervals_is_named_once() -> None:
    watch = StragglerWatch(threshold=1.2, patience=3)
    hosts = ["node1", "node1", "node2", "node2"]
    assert watch.judge([0.10, 0.10, 0.10, 0.20], hosts) == []
    assert watch.judge([0.10, 0.11, 0.10, 0.20], hosts) == []
    (line,) = watch.judge([0.10, 0.10, 0.10, 0.20], hosts)
    assert line.startswith("straggler: rank 3 on node2 takes 2.00x the median time between steps")
    assert watch.judge([0.10, 0.10, 0.10, 0.20], hosts) == []  # said once per streak
    assert watch.judge([0.10, 0.10, 0.10, 0.10], hosts) == []  # recovered
    assert watch.per_host()["node1"] == pytest.approx((0.10 * 9 + 0.11) / 10)


def test_a_noisy_rank_that_recovers_is_not_named() -> None:
    watch = StragglerWatch(threshold=1.2, patience=3)
    hosts = ["a", "b"]
    for means in ([0.1, 0.2], [0.1, 0.1], [0.1, 0.2], [0.1, 0.1], [0.1, 0.2]):
        assert watch.judge(means, hosts) == []


def test_own_time_is_the_time_between_steps() -> None:
    own = OwnTime()
    own.step_starts(0.0)  # no step ended yet: nothing counted
    own.step_ends(0.50)
    own.step_starts(0.53)  # 30 ms loading the next batch
    own.step_ends(1.50)  # the step itself (its collectives wait for slow peers): not counted
    own.step_starts(1.52)
    assert own.take() == pytest.approx(0.025)
    assert own.take() is None


@pytest.mark.slow
def test_a_slow_rank_in_a_ddp_run_is_warned_about(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "normia.cli", "train", "experiment=quickstart", "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.devices=2", "trainer.max_steps=16", "trainer.max_epochs=null", "trainer.log_every_n_steps=2",
         "trainer.enable_progress_bar=false", "logger.system_metrics=false",
         "+callbacks.slow._target_=probes.SlowRank", "+callbacks.slow.delay_s=0.15"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: straggler:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: straggler: rank 1 on "), proc.stderr[
        -3000:
    ]
    assert "between steps per node" in proc.stdout
    done = json.loads(next((workdir / "outputs" / "quickstart").glob("*/done.json")).read_text())
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}").get_run(done["mlflow_run_id"])
    assert run.data.tags["normia.straggler"].startswith("straggler: rank 1 on ")
