"""`normia train` measures energy by default: figures where a counter is readable, the reason where not (this VM:
no RAPL), a labelled estimate only when asked, nothing with energy=off; a stopped run's energy rides in its
checkpoint and the resumed run reports the sum in the same MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from normia.cli import main
from normia.energy.counters import rapl_counters

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]
HERE = Path(__file__).parent
TRAIN_DIR = HERE.parent / "train"  # stop_at_step.CtrlCAtStep: a Ctrl-C at a known step


def _run(workdir: Path, name: str):  # type: ignore[no-untyped-def]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return run


def _done(workdir: Path, name: str) -> dict:
    (path,) = (workdir / "outputs" / name).rglob("done.json")
    return json.loads(path.read_text())


def test_a_default_run_reports_its_energy_or_why_not(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "experiment=quickstart", *FAST, "trainer.max_steps=6", "name=default_energy"]) == 0
    run = _run(workdir, "default_energy")
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("normia.energy.")}
    assert {"normia.energy.cpu", "normia.energy.dram", "normia.energy.total", "normia.energy.gco2e"} <= set(
        tags
    )
    done = _done(workdir, "default_energy")["energy"]
    assert done["tags"] == tags
    out = capsys.readouterr().out
    if rapl_counters()[0]:  # a machine with readable RAPL: measured figures
        assert tags["normia.energy.cpu"].startswith("measured: rapl")
        assert run.data.metrics["energy/train_cpu_kwh"] > 0 and "kWh" in out
    else:  # this VM: no figure at all, the reason everywhere
        assert tags["normia.energy.cpu"].startswith("not measured: ")
        assert not [k for k in run.data.metrics if k.startswith("energy/")]
        assert "cpu, dram: not measured: " in out


def test_energy_off_measures_nothing(workdir: Path) -> None:
    assert (
        main(["train", "experiment=quickstart", *FAST, "trainer.max_steps=3", "name=off", "energy=off"]) == 0
    )
    run = _run(workdir, "off")
    assert not [k for k in (*run.data.tags, *run.data.metrics) if "energy" in k and k != "energy.mode"]
    assert run.data.params["energy.mode"] == "off" and _done(workdir, "off")["energy"] is None


def test_bad_energy_settings_are_refused(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "experiment=quickstart", *FAST, "energy.pue=0.8"]) != 0
    assert "energy.pue=0.8" in capsys.readouterr().err


@pytest.mark.slow
def test_a_stopped_run_resumes_counting_into_the_same_mlflow_run(workdir: Path, monkeypatch) -> None:
    """With an estimate (100 W, asked for; this VM has no counter) the figures exist here: the resumed run's total
    is both attempts', the checkpoint holds the first attempt's, and the MLflow run is the same one."""
    monkeypatch.syspath_prepend(str(TRAIN_DIR))
    base = ["train", "experiment=quickstart", *FAST, "name=requeued", "trainer.max_steps=20",
            "energy.estimate=true", "energy.cpu_tdp_w=100"]  # fmt: skip
    stopper = ["+callbacks.ctrl_c._target_=stop_at_step.CtrlCAtStep", "+callbacks.ctrl_c.step=8"]
    assert main([*base, *stopper]) == 130
    [ckpt] = (workdir / "outputs" / "requeued").rglob("last.ckpt")
    first = torch.load(ckpt, weights_only=False)["callbacks"]["EnergyCallback"]["total"]
    first_run = _run(workdir, "requeued")
    first_kwh = first_run.data.metrics["energy/train_cpu_kwh_estimate"]  # logged at the stop
    assert first["samples"] > 0 and first["seconds"]["train"] > 0
    # logged at the stop, after the checkpoint was written: that much and the time to write it
    assert first_kwh >= first["joules"]["train"]["cpu"] / 3.6e6

    assert main([*base, *stopper, "resume=true"]) == 0  # same config; step 8 is behind it now
    run = _run(workdir, "requeued")
    assert run.info.run_id == first_run.info.run_id
    total = _done(workdir, "requeued")["energy"]["totals"]
    batch = first["samples"] // 8
    assert total["samples"] == 20 * batch  # 8 steps, then 12 more: each counted once
    assert total["seconds"]["train"] > first["seconds"]["train"]
    assert run.data.metrics["energy/train_cpu_kwh_estimate"] > first_kwh
    assert run.data.metrics["energy/train_mean_power_w_estimate"] == pytest.approx(100.0, rel=1e-3)
    assert run.data.tags["normia.energy.cpu"].startswith("estimate: energy.cpu_tdp_w 100 W x time")


@pytest.mark.slow
def test_ddp_counts_the_node_once_end_to_end(workdir: Path) -> None:
    """2 ranks on one node with a 100 W CPU estimate (this VM has no counter): the node is counted by local rank 0
    only, so the job's mean power is about 100 W, not 200 W; both ranks' samples are counted."""
    args = ["train", "experiment=quickstart", *FAST, "trainer=ddp", "trainer.max_steps=20", "name=ddp_energy",
            "energy.estimate=true", "energy.cpu_tdp_w=100"]  # fmt: skip
    assert main(args) == 0
    run = _run(workdir, "ddp_energy")
    assert run.data.metrics["energy/train_mean_power_w_estimate"] == pytest.approx(100.0, rel=0.15)
    total = _done(workdir, "ddp_energy")["energy"]["totals"]
    assert len(total["kinds"]["cpu"]["sources"]) == 1
    assert total["samples"] == 20 * 2 * 64  # quickstart's batch of 64 on each of 2 ranks
