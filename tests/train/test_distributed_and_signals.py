"""Multi-process training on CPU (gloo) and Ctrl-C: DDP with 2 ranks matches 1 process with the same global batch;
a stopped run leaves a consistent checkpoint and resumes into the same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from normia.cli import main

COMMON = [
    "experiment=quickstart",
    "model.dropout=0.0",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=-1",
    "trainer.max_steps=30",
]


def _final_weights(workdir: Path, run: str) -> dict[str, torch.Tensor]:
    [ckpt] = (workdir / "outputs" / run).rglob("last.ckpt")
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process(workdir: Path, strategy: str) -> None:
    """Same global batch (2 x 32 vs 64), same data order: the final weights agree to float tolerance."""
    assert main(["train", *COMMON, "name=single", "data.batch_size=64"]) == 0
    two = [
        "name=ddp",
        f"trainer={strategy}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "data.batch_size=32",
    ]
    assert main(["train", *COMMON, *two]) == 0
    single, ddp = _final_weights(workdir, "single"), _final_weights(workdir, "ddp")
    assert single.keys() == ddp.keys()
    start = torch.load(next((workdir / "outputs" / "single").rglob("last.ckpt")), weights_only=True)[
        "global_step"
    ]
    assert start == 30
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")
    summary = json.loads(next((workdir / "outputs" / "ddp").rglob("done.json")).read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 30


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_continues_the_run(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "normia.cli",
        "train",
        "experiment=quickstart",
        "logger.system_metrics=false",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1",
        "trainer.max_steps=100000",
        "trainer.checkpoint_every_n_steps=25",
    ]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while not list((workdir / "outputs").rglob("last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "stop requested" in out and "resume=" in out
    [ckpt] = (workdir / "outputs").rglob("last.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    stopped_at = saved["global_step"]
    assert stopped_at > 25, "the stop must save the step it stopped at, not only the periodic checkpoint"
    run_id = saved["normia"]["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "KILLED"
    assert not list((workdir / "outputs").rglob("done.json"))

    code = main(
        [
            "train",
            "experiment=quickstart",
            "logger.system_metrics=false",
            "trainer.enable_progress_bar=false",
            "trainer.max_epochs=-1",
            f"trainer.max_steps={stopped_at + 10}",
            "resume=true",
        ]
    )
    assert code == 0
    summary = json.loads(next((workdir / "outputs").rglob("done.json")).read_text())
    assert summary["mlflow_run_id"] == run_id and summary["global_step"] == stopped_at + 10
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_ddp_sweep_makes_one_sweep_dir_and_runs_each_job_once(workdir: Path, capsys) -> None:
    args = [
        "train",
        "-m",
        *COMMON,
        "trainer.max_steps=6",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "optim.lr=1e-3,3e-3",
    ]
    assert main(args) == 0
    sweeps = list((workdir / "outputs" / "quickstart" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps
    jobs = sorted(p.name for p in sweeps[0].iterdir())
    assert jobs == ["0", "1"]
    for job in jobs:
        summary = json.loads((sweeps[0] / job / "done.json").read_text())
        assert summary["world_size"] == 2 and summary["global_step"] == 6
    assert capsys.readouterr().out.count("== job ") == 2
