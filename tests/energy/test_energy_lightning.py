"""The energy callback in a real Lightning Trainer (CPU) with test-double counters: training and validation as
separate figures, the sanity check not counted, the partial sum carried by a checkpoint into the resumed run, the
figures and tags in the loggers and in a real MLflow run; and DDP with 2 processes sums without double counting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from fakes import FakeCounter
from tiny import SEQ, Recorder, TinyTokens, gpu_only, loader, trainer

from normia.energy.callback import EnergyCallback

HERE = Path(__file__).parent


def test_training_and_validation_windows_in_a_real_trainer() -> None:
    gpu, log = FakeCounter(), Recorder()
    energy = EnergyCallback(pue=1.5, carbon_intensity_g_per_kwh=20.0, open_counters=gpu_only(gpu))
    t = trainer(max_steps=6, val_check_interval=3, limit_val_batches=2, callbacks=[energy], logger=log)
    t.fit(TinyTokens(gpu), loader(48, 4), loader(8, 4))  # the 2 sanity-check batches add 0.5 J, not counted
    total = energy.report["totals"]
    assert total["joules"]["train"]["gpu"] == pytest.approx(6 * 1.0)
    assert total["joules"]["val"]["gpu"] == pytest.approx(2 * 2 * 0.25)  # 2 validations x 2 batches
    assert total["samples"] == 6 * 4 and total["tokens"] == 6 * 4 * SEQ
    m = log.metrics
    assert m["energy/train_gpu_kwh"] == pytest.approx(6 / 3.6e6)
    assert m["energy/val_kwh"] == pytest.approx(1 / 3.6e6)
    assert m["energy/train_j_per_token"] == pytest.approx(6 / (6 * 4 * SEQ))
    assert m["energy/gco2e"] == pytest.approx(7 / 3.6e6 * 1.5 * 20.0)
    assert log.tags["normia.energy.gpu"].startswith("measured: fake total energy")


def test_the_partial_sum_rides_in_the_checkpoint_into_the_resumed_run(tmp_path: Path) -> None:
    gpu = FakeCounter()
    first = EnergyCallback(open_counters=gpu_only(gpu))
    t = trainer(max_steps=4, limit_val_batches=0, callbacks=[first], logger=False)
    module = TinyTokens(gpu)
    t.fit(module, loader(64, 4))
    t.save_checkpoint(tmp_path / "last.ckpt")
    gpu.joules += 1000.0  # between the attempts (the job waits in the queue): counted by no window

    second = EnergyCallback(open_counters=gpu_only(gpu))
    log = Recorder()
    t2 = trainer(max_steps=10, limit_val_batches=0, callbacks=[second], logger=log)
    t2.fit(TinyTokens(gpu), loader(64, 4), ckpt_path=tmp_path / "last.ckpt")
    total = second.report["totals"]
    assert total["joules"]["train"]["gpu"] == pytest.approx(10 * 1.0)  # 4 J + 6 J: both attempts, once each
    assert total["samples"] == 10 * 4
    assert log.metrics["energy/train_kwh"] == pytest.approx(10 / 3.6e6)


def test_figures_and_tags_in_a_real_mlflow_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from normia.tracking.mlflow_logger import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(tracking_uri=uri, experiment_name="energy", system_metrics=False)

    class Begin(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            tracker.begin()

    gpu = FakeCounter()
    energy = EnergyCallback(open_counters=lambda device, leader: _gpu_and_missing_cpu(gpu))
    t = trainer(max_steps=3, limit_val_batches=0, callbacks=[Begin(), energy], logger=tracker)
    t.fit(TinyTokens(gpu, train_j=3600.0), loader(32, 4))
    run = MlflowClient(tracking_uri=uri).get_run(tracker.version)
    assert run.data.metrics["energy/train_gpu_kwh"] == pytest.approx(3 * 3600 / 3.6e6)
    assert run.data.metrics["energy/gco2e"] == pytest.approx(3e-3 * 21.7)
    assert not any("cpu" in k for k in run.data.metrics)  # not measured: no figure
    assert run.data.tags["normia.energy.gpu"].startswith("measured: ")
    assert run.data.tags["normia.energy.cpu"] == "not measured: /sys/class/powercap does not exist"
    assert run.data.tags["normia.energy.total"].startswith("measured: gpu; without cpu")


def _gpu_and_missing_cpu(gpu: FakeCounter) -> Any:
    from normia.energy.counters import CounterSet

    return CounterSet([gpu.counter()], {"cpu": "/sys/class/powercap does not exist"})


@pytest.mark.slow
def test_ddp_with_two_processes_sums_without_double_counting(tmp_path: Path) -> None:
    """Rank r's GPU spends (r + 1) J a step; the node's RAPL package (a fake powercap tree shared by both
    processes) 1 J a step; the node is counted once (by local rank 0), the GPUs once each."""
    steps = 5
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out = subprocess.run(
        [sys.executable, str(HERE / "ddp_energy.py"), str(tmp_path), str(steps)],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0] == reports[1], "every rank ends with the same totals"
    total = reports[0]["totals"]
    assert total["joules"]["train"]["gpu"] == pytest.approx(steps * (1 + 2))
    assert total["joules"]["train"]["cpu"] == pytest.approx(steps * 1.0)  # not 2x: once per node
    assert total["joules"]["val"]["gpu"] == pytest.approx(0.25 * (1 + 2))  # 1 validation batch per rank
    assert total["samples"] == steps * 4 * 2 and total["tokens"] == steps * 4 * 2 * SEQ
    assert len(total["kinds"]["gpu"]["sources"]) == 2 and len(total["kinds"]["cpu"]["sources"]) == 1
