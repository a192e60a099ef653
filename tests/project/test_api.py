"""normia.compose / normia.train: the CLI's composition, checks and run, from Python, returning a RunSummary."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf

import normia
from normia.config.secrets import redact
from normia.errors import UserError
from normia.training import cli as train_cli

TESTS = Path(__file__).resolve().parents[1]
QUIET = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]
HEAVY = ("torch", "lightning", "mlflow", "hydra", "omegaconf")


def test_import_normia_and_its_api_names_pull_no_heavy_library() -> None:
    code = (
        "import sys, normia\n"
        "from normia.cli import _parser\n"
        "_parser().format_help()\n"
        "assert callable(normia.train) and callable(normia.compose), 'api names'\n"
        "assert normia.RunSummary and normia.RunFailed and normia.RunStopped\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_public_names_and_signatures() -> None:
    import inspect

    assert {"train", "compose", "RunSummary", "RunFailed", "RunStopped"} <= set(dir(normia))
    assert list(inspect.signature(normia.train).parameters) == ["overrides", "config_dir"]
    assert list(inspect.signature(normia.compose).parameters) == ["overrides", "config_dir"]
    assert issubclass(normia.RunStopped, normia.RunFailed) and issubclass(normia.RunFailed, RuntimeError)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        normia.nope  # noqa: B018


def test_compose_is_what_cfg_prints(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = ["experiment=quickstart", "optim.lr=1e-3", f"paths.output_dir={workdir / 'run'}"]
    cfg = normia.compose(overrides)
    assert cfg.name == "quickstart" and cfg.optim.lr == 1e-3 and cfg.paths.output_dir == str(workdir / "run")
    assert train_cli.main([*overrides, "--cfg"]) == 0
    assert capsys.readouterr().out.strip() == OmegaConf.to_yaml(redact(cfg)).strip()
    assert sorted(p.name for p in workdir.iterdir()) == []  # nothing created, nothing run


def test_compose_assigns_a_fresh_output_folder_as_the_cli_does(workdir: Path) -> None:
    cfg = normia.compose(("experiment=quickstart",))
    folder = Path(cfg.paths.output_dir)
    assert folder.parent == Path("outputs") / "quickstart" and not folder.exists()


@pytest.mark.parametrize(
    "bad",
    ["trainer.max_stpes=3", "model=mlpp", "optim.lr=fast", "trainer.max_epochs="],
    ids=["typo-key", "unknown-option", "wrong-type", "empty"],
)
def test_a_bad_override_raises_the_clis_one_line_message(workdir: Path, bad: str) -> None:
    overrides = ["experiment=quickstart", bad]
    with pytest.raises(UserError) as from_cli:
        train_cli.main(overrides)
    with pytest.raises(UserError) as from_compose:
        normia.compose(overrides)
    with pytest.raises(UserError) as from_train:
        normia.train(overrides)
    assert str(from_compose.value) == str(from_cli.value) == str(from_train.value)
    assert "\n" not in str(from_compose.value)
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()


def test_a_sweep_is_refused_before_anything_runs(workdir: Path) -> None:
    with pytest.raises(UserError) as from_cli:
        train_cli.main(["experiment=quickstart", "optim.lr=1e-3,3e-3"])
    for call in (normia.compose, normia.train):
        with pytest.raises(UserError, match=r"^'optim.lr=1e-3,3e-3' lists several values: normia\.") as err:
            call(["experiment=quickstart", "optim.lr=1e-3,3e-3"])
        # the CLI's words up to the fix, which is Python's here (no -m flag)
        assert str(err.value).split(": ")[0] == str(from_cli.value).split(": ")[0]
    assert list(workdir.iterdir()) == []


def test_overrides_must_be_a_list_of_strings() -> None:
    with pytest.raises(TypeError, match=r"a list of strings, e.g. \['experiment=quickstart'\]"):
        normia.compose("experiment=quickstart")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="each override is a string"):
        normia.train(["experiment=quickstart", 3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("launcher=slurm", "launcher=slurm submits to a cluster: run it from a terminal"),
        ("launcher.dry_run=true", r"launcher.dry_run=true runs nothing: use normia.compose"),
        ("debug=fast_dev_run", "debug=fast_dev_run records nothing"),
    ],
)
def test_runs_that_leave_no_summary_are_refused(workdir: Path, override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        normia.train(["experiment=quickstart", override])
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()


def test_a_missing_config_dir_is_a_user_error(workdir: Path) -> None:
    with pytest.raises(UserError, match="config_dir: config folder 'nowhere' does not exist"):
        normia.compose(["experiment=quickstart"], config_dir="nowhere")


def test_train_returns_the_summary_of_the_mlflow_run(workdir: Path) -> None:
    summary = normia.train(["experiment=quickstart", "trainer.max_epochs=1", *QUIET])

    assert isinstance(summary, normia.RunSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.result = 1.0  # type: ignore[misc]
    assert summary.name == "quickstart" and summary.monitor == "val/acc"
    assert (
        summary.output_dir.is_absolute() and summary.output_dir.parent == workdir / "outputs" / "quickstart"
    )
    assert (summary.output_dir / "done.json").is_file() and (summary.output_dir / "config.yaml").is_file()
    assert summary.global_step == 22 and summary.epochs == 1 and summary.world_size == 1
    assert summary.wall_time_s > 0 and summary.throughput["samples_per_s"] > 0
    assert summary.result == pytest.approx(summary.metrics["val/acc"]) and 0.1 < summary.result <= 1
    assert summary.checkpoint is not None and summary.checkpoint.is_file()
    assert summary.checkpoint.parent == summary.output_dir / "checkpoints"
    assert summary.tracking_uri == f"sqlite:///{workdir / 'mlflow.db'}"

    run = MlflowClient(tracking_uri=summary.tracking_uri).get_run(summary.run_id)
    assert run.info.status == "FINISHED" and run.info.experiment_id
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(summary.metrics)
    for key, value in summary.metrics.items():
        assert run.data.metrics[key] == pytest.approx(value, rel=1e-6), key
    assert summary.mlflow_run().info.run_id == summary.run_id
    steps, values = summary.metric_history("val/acc")
    assert steps == [21] and values == [pytest.approx(summary.metrics["val/acc"])]
    assert summary.metric_history("no/such") == ([], [])

    assert normia.RunSummary.from_output_dir(summary.output_dir) == summary
    saved = json.loads((summary.output_dir / "done.json").read_text())
    assert saved["mlflow_run_id"] == summary.run_id and saved["result"] == summary.result

    model, data = summary.load_model()
    assert not model.training and type(data).__name__ == "DigitsDataModule"
    weights = torch.load(summary.checkpoint, weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[f"model.{name}"]), name


def test_train_without_mlflow(workdir: Path) -> None:
    summary = normia.train(["experiment=quickstart", "trainer.max_steps=5", "logger=none", *QUIET])
    assert summary.run_id is None and summary.tracking_uri is None and summary.global_step == 5
    assert not (workdir / "mlflow.db").exists()
    with pytest.raises(ValueError, match="was not tracked in MLflow"):
        summary.metric_history("val/acc")


def test_a_stopped_run_raises_run_stopped_and_resumes_with_its_override(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TESTS / "train"))  # stop_at_step.CtrlCAtStep presses Ctrl-C at a step
    base = ["experiment=quickstart", "trainer.max_epochs=-1", "trainer.max_steps=12", *QUIET]
    stopper = ["+callbacks.ctrl_c._target_=stop_at_step.CtrlCAtStep", "+callbacks.ctrl_c.step=6"]
    with pytest.raises(normia.RunStopped) as stopped:
        normia.train([*base, *stopper])
    err = stopped.value
    assert isinstance(err, RuntimeError) and err.exit_code == 130
    assert err.output_dir.parent == workdir / "outputs" / "quickstart"
    assert (err.output_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (err.output_dir / "done.json").exists()
    assert err.resume_override == f"resume={err.output_dir}" and err.resume_override in str(err)
    with pytest.raises(FileNotFoundError, match="has not finished"):
        normia.RunSummary.from_output_dir(err.output_dir)

    resumed = normia.train([*base, err.resume_override])
    assert resumed.output_dir == err.output_dir and resumed.global_step == 12
    first = MlflowClient(tracking_uri=resumed.tracking_uri).search_runs(
        [resumed.mlflow_run().info.experiment_id]
    )
    assert [r.info.run_id for r in first] == [resumed.run_id]  # the same MLflow run, continued


def test_a_project_config_dir_is_layered_over_normias(
    workdir: Path, tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    before = os.environ.get("PYTHONPATH")
    with pytest.raises(UserError, match="unknown experiment 'my_study'"):
        normia.compose(["experiment=my_study"])  # not from here: workdir is outside the project

    configs = tiny_project / "configs"
    cfg = normia.compose(["experiment=my_study", "trainer=ddp"], config_dir=configs)  # normia's options stay
    assert cfg.model._target_ == "my_study.models.MyNet" and cfg.trainer.strategy == "ddp"
    assert "NORMIA_CONFIG_PATH" not in os.environ and os.environ.get("PYTHONPATH") == before

    summary = normia.train(["experiment=my_study", "trainer.max_epochs=1", *QUIET], config_dir=str(configs))
    assert summary.name == "my_study" and summary.epochs == 1
    assert summary.output_dir.parent == workdir / "outputs" / "my_study"
    assert summary.mlflow_run().data.params["model._target_"] == "my_study.models.MyNet"
    model, _ = summary.load_model(config_dir=configs)
    assert type(model).__module__ == "my_study.models"
    assert "NORMIA_CONFIG_PATH" not in os.environ and os.environ.get("PYTHONPATH") == before


def test_config_dir_none_finds_the_project_around_the_current_folder(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    monkeypatch.chdir(tiny_project / "src")
    cfg = normia.compose(["experiment=my_study"])
    assert cfg.model._target_ == "my_study.models.MyNet"


@pytest.mark.slow
def test_train_with_two_local_processes(workdir: Path) -> None:
    summary = normia.train(
        [
            "experiment=quickstart",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            *QUIET,
        ]
    )
    assert summary.world_size == 2 and summary.global_step == 11  # each rank takes half of the 22 batches
    run = summary.mlflow_run()
    assert run.data.metrics["val/acc"] == pytest.approx(summary.metrics["val/acc"], rel=1e-6)
