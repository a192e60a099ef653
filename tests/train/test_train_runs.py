"""Real training runs on CPU: every experiment's fast_dev_run, resume into the same MLflow run, a sweep, eval,
secrets kept out of MLflow, and checkpoints that need unpickling refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from normia.cli import main
from normia.config.paths import configs_dir, group_options

SHORT = [
    "logger.system_metrics=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=-1",
    "trainer.check_val_every_n_epoch=null",
]


def _done(workdir: Path, name: str = "quickstart") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "outputs" / name).rglob("done.json"))]


def _run(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


@pytest.mark.slow
@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_fast_dev_run_of_every_experiment(workdir: Path, experiment: str) -> None:
    if "???" in (configs_dir() / "experiment" / f"{experiment}.yaml").read_text():
        pytest.skip(
            "needs a value of the user's (a pretrained model folder); tests/hf runs it with a tiny model"
        )
    if "override /trainer: gpu" in (configs_dir() / "experiment" / f"{experiment}.yaml").read_text():
        import torch

        # a GPU experiment on a CPU machine: refused in one line, nothing written
        if not torch.cuda.is_available():
            assert main(["train", f"experiment={experiment}", "debug=fast_dev_run"]) == 2
            assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()
            return
    assert main(["train", f"experiment={experiment}", "debug=fast_dev_run"]) == 0
    assert not (workdir / "mlflow.db").exists(), "fast_dev_run logs nothing"
    assert not (workdir / "outputs").exists(), (
        "fast_dev_run keeps nothing (issue 25: config.yaml, checkpoints/)"
    )


def test_train_then_resume_continues_the_same_mlflow_run(workdir: Path, capsys) -> None:
    args = [
        "train",
        "experiment=quickstart",
        *SHORT,
        "trainer.val_check_interval=10",
        "trainer.log_every_n_steps=2",
    ]
    assert main([*args, "trainer.max_steps=20"]) == 0
    first = _done(workdir)[0]
    assert first["global_step"] == 20 and first["mlflow_run_id"]
    assert main([*args, "trainer.max_steps=40", "resume=true"]) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out
    second = _done(workdir)[0]
    assert second["mlflow_run_id"] == first["mlflow_run_id"] and second["global_step"] == 40
    client = _run(workdir)
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["summary/samples_per_s"] > 0
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert min(steps) < 20 <= max(steps) and max(steps) >= 38
    experiment = client.get_experiment_by_name("quickstart")
    assert len(client.search_runs([experiment.experiment_id])) == 1, "resume must not start a new run"
    assert run.data.params["optim.lr"] == "0.003" and run.data.tags["normia.git_commit"]
    assert run.data.tags["normia.world_size"] == "1"
    assert "normia.version.torch" in run.data.tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml"} <= artifacts


def test_quickstart_learns_and_eval_reproduces_its_metric(workdir: Path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "experiment=quickstart",
                *SHORT,
                "trainer.max_steps=150",
                "trainer.val_check_interval=50",
            ]
        )
        == 0
    )
    summary = _done(workdir)[0]
    assert summary["metrics"]["val/acc"] >= 0.9, summary["metrics"]
    assert summary["throughput"]["samples_per_s"] > 0
    capsys.readouterr()
    assert main(["eval", f"ckpt={summary['best_checkpoint']}"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert float(printed["val/acc"]) == pytest.approx(summary["result"], abs=1e-4)


def test_sweep_of_two_jobs_then_rerun_skips_them(workdir: Path, capsys) -> None:
    args = [
        "train",
        "-m",
        "experiment=quickstart",
        "optim.lr=1e-3,3e-3",
        *SHORT,
        "trainer.max_steps=10",
        "logger=none",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    dones = _done(workdir)
    assert len(dones) == 2 and "sweep of 2 job(s)" in out
    assert len({d["output_dir"] for d in dones}) == 2
    assert main(args) == 0
    assert capsys.readouterr().out.count("already done") == 2


def test_secrets_never_reach_mlflow_or_saved_config(workdir: Path, capsys) -> None:
    secret = "s3cr3t-value-42"
    assert (
        main(["train", "experiment=quickstart", *SHORT, "trainer.max_steps=4", f"+tags.hub_token={secret}"])
        == 0
    )
    printed = capsys.readouterr()
    assert secret not in printed.out + printed.err
    summary = _done(workdir)[0]
    assert secret not in (Path(summary["output_dir"]) / "config.yaml").read_text()
    client = _run(workdir)
    run = client.get_run(summary["mlflow_run_id"])
    everything = json.dumps([run.data.params, run.data.tags])
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(workdir))
    everything += Path(local).read_text()
    assert secret not in everything and "***" in everything


class _Evil:
    def __reduce__(self):
        return (print, ("this ran during unpickling",))


def test_checkpoint_needing_unpickling_is_refused(workdir: Path, capsys) -> None:
    run_dir = workdir / "outputs" / "quickstart" / "evil"
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "payload": _Evil()}, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "config.yaml").write_text("{}")
    code = main(["eval", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}"])
    captured = capsys.readouterr()
    assert code == 2 and "refusing to load" in captured.err
    assert "this ran during unpickling" not in captured.out


def test_lightning_refusal_is_a_clean_error(workdir: Path, capsys) -> None:
    code = main(
        [
            "train",
            "experiment=quickstart",
            "logger=none",
            "trainer.enable_progress_bar=false",
            "trainer.val_check_interval=50",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "val_check_interval" in err and err.count("\n") == 1


def _weights(workdir: Path, name: str) -> dict[str, torch.Tensor]:
    [ckpt] = (workdir / "outputs" / name).rglob("last.ckpt")
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_resume_mid_epoch_is_bitwise_equal_to_an_uninterrupted_run(workdir: Path) -> None:
    """Ctrl-C at step 15 of a 22-step epoch (dropout on, so RNG state matters too), resume to 30: the same weights,
    bit for bit, as 30 steps in one go. Data position, optimizer, schedule and RNG all travel in the checkpoint."""
    base = [
        "train",
        "experiment=quickstart",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1",
        "trainer.max_steps=30",
    ]
    assert main([*base, "name=straight"]) == 0
    stopper = ["+callbacks.ctrl_c._target_=stop_at_step.CtrlCAtStep", "+callbacks.ctrl_c.step=15"]
    assert main([*base, "name=resumed", *stopper]) == 130
    [ckpt] = (workdir / "outputs" / "resumed").rglob("last.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] == 15
    assert main([*base, "name=resumed", "resume=true"]) == 0
    straight, resumed = _weights(workdir, "straight"), _weights(workdir, "resumed")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


@pytest.mark.slow
def test_compile_applies_to_the_inner_network(workdir: Path) -> None:
    base = [
        "train",
        "experiment=quickstart",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1",
    ]
    assert main([*base, "name=eager", "trainer.max_steps=5", "model.dropout=0.0"]) == 0
    assert main([*base, "name=compiled", "trainer.max_steps=5", "model.dropout=0.0", "compile=true"]) == 0
    eager, compiled = _weights(workdir, "eager"), _weights(workdir, "compiled")
    assert eager.keys() == compiled.keys(), "compiling must not rename the checkpoint's keys"
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5)
