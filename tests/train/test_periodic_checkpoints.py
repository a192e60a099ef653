"""Periodic saves that happen (wall clock and steps, both formats, retention) and SIGTERM outside Slurm: a `kill`
saves a checkpoint and exits 143 instead of dying with nothing saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from normia.training.checkpoint import load_checkpoint_file
from tests.conftest import run_normia

PROBES = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
}
QUIET = [
    "experiment=quickstart",
    "trainer.enable_progress_bar=false",
    "logger.system_metrics=false",
    "energy=off",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "ranks", [[], ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]], ids=["file", "sharded"]
)
def test_wall_clock_saves_happen_and_only_the_newest_are_kept(workdir: Path, ranks: list[str]) -> None:
    """No step cadence, a save every 0.3 s: several saves during the run, two kept, last.ckpt the final step."""
    result = run_normia(
        "train",
        *QUIET,
        *ranks,
        "trainer.max_epochs=-1",
        "trainer.max_steps=120",
        "trainer.limit_val_batches=0",
        "checkpoint.every_minutes=0.005",
        "checkpoint.keep_last=2",
        "+callbacks.slow._target_=probes.SlowRank",  # every step >= 20 ms: 120 steps >= 2.4 s, 8 cadences
        "+callbacks.slow.rank=0",
        "+callbacks.slow.delay_s=0.02",
        cwd=workdir,
        env=PROBES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [done] = (workdir / "outputs").rglob("done.json")
    summary = json.loads(done.read_text())
    assert summary["checkpoints"]["saves"] >= 3, summary["checkpoints"]
    folder = done.parent / "checkpoints"
    steps = sorted(p.name for p in folder.glob("step-*.ckpt"))
    assert len(steps) == 2 and steps[-1] == "step-00000120.ckpt", steps
    assert os.readlink(folder / "last.ckpt") == "step-00000120.ckpt"
    assert load_checkpoint_file(folder / "last.ckpt")["global_step"] == 120
    assert "checkpoints" in result.stdout and "training blocked" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ranks", "allocation"),
    [([], None), (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], None), ([], "999")],
    ids=["1", "2", "1-inside-an-allocation"],
)
def test_sigterm_saves_and_exits_143(workdir: Path, ranks: list[str], allocation: str | None) -> None:
    """Also a launcher=local run inside a Slurm allocation (SLURM_JOB_ID set, scancel sends SIGTERM): it used to be
    left to Lightning, which printed "Received SIGTERM" and exited 0 with no last.ckpt and the run FAILED."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SLURM_JOB_ID")}
    if allocation is not None:
        env["SLURM_JOB_ID"] = allocation
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "normia.cli",
        "train",
        *QUIET,
        *ranks,
        "trainer.max_epochs=-1",
        "trainer.max_steps=100000",
        "checkpoint.every_n_steps=20",
    ]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while not list((workdir / "outputs").rglob("last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 143, out[-3000:]
    assert "stop requested (SIGTERM)" in out
    [last] = (workdir / "outputs").rglob("last.ckpt")
    saved = load_checkpoint_file(last)
    assert saved["global_step"] > 20, "the stop saves the step it stopped at"
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(saved["normia"]["mlflow_run_id"]).info.status == "KILLED"
