"""Resume semantics (issue 9, section C): a resume with a changed hyper-parameter is refused with the changed keys,
an extension of the run is allowed and recorded in MLflow, and a checkpoint without normia's state says what it
cannot restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf

from normia.cli import main
from normia.errors import UserError

BASE = [
    "train",
    "experiment=quickstart",
    "name=chg",
    "logger.system_metrics=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=null",
    "trainer.val_check_interval=4",
]


def _runs(workdir: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _config(workdir: Path) -> dict:
    (path,) = (workdir / "outputs" / "chg").glob("*/config.yaml")
    return OmegaConf.to_container(OmegaConf.load(path))


@pytest.fixture
def first_run(workdir: Path) -> Path:
    assert main([*BASE, "trainer.max_steps=4"]) == 0
    return workdir


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_changed_hyperparameters_are_refused_and_nothing_changes(first_run: Path, capsys) -> None:
    before = _config(first_run)
    assert main([*BASE, "trainer.max_steps=8", "optim.lr=1e-2", "resume=true"]) == 2
    (line,) = _errors(capsys)
    assert "optim.lr (0.003 -> 0.01)" in line and "restored from the checkpoint" in line
    assert main([*BASE, "trainer.max_steps=8", "data.batch_size=32", "model.hidden=[32]", "resume=true"]) == 2
    (line,) = _errors(capsys)
    assert "data.batch_size (64 -> 32)" in line and "resume_allow_changes=[data.batch_size," in line
    assert _config(first_run) == before, "a refused resume leaves config.yaml as it was"
    (run,) = _runs(first_run)
    assert run.info.status == "FINISHED" and run.data.params["optim.lr"] == "0.003"


def test_extending_the_run_is_allowed_and_recorded(first_run: Path, capsys) -> None:
    assert main([*BASE, "trainer.max_steps=8", "resume=true"]) == 0
    assert "with changes: trainer.max_steps: 4 -> 8" in capsys.readouterr().out
    (run,) = _runs(first_run)
    assert run.data.tags["normia.resume_changes"] == "trainer.max_steps: 4 -> 8"
    client = MlflowClient(tracking_uri=f"sqlite:///{first_run / 'mlflow.db'}")
    logged = OmegaConf.load(client.download_artifacts(run.info.run_id, "config.yaml", str(first_run)))
    assert logged.trainer.max_steps == 8 == _config(first_run)["trainer"]["max_steps"]
    assert main([*BASE, "trainer.max_steps=8", "resume=true"]) == 0, "an unchanged resume is not refused"


def test_explicitly_allowed_change_is_applied_and_recorded(first_run: Path) -> None:
    args = [*BASE, "trainer.max_steps=8", "data.batch_size=32", "resume=true"]
    assert main([*args, "resume_allow_changes=[data.batch_size]"]) == 0
    (run,) = _runs(first_run)
    assert "data.batch_size: 64 -> 32" in run.data.tags["normia.resume_changes"]


def test_checkpoint_without_normia_state_says_what_is_lost(first_run: Path, capsys) -> None:
    (ckpt,) = (first_run / "outputs" / "chg").glob("*/checkpoints/last.ckpt")
    state = torch.load(ckpt, weights_only=True)
    state.pop("normia")
    state.pop("DigitsDataModule")
    state["callbacks"] = {k: v for k, v in state["callbacks"].items() if k != "NormiaState"}
    torch.save(state, ckpt)
    assert main([*BASE, "trainer.max_steps=6", "resume=true"]) == 0
    out = capsys.readouterr().out
    assert "warning: this checkpoint lacks normia's data position" in out
    assert "normia's random-number state" in out
    assert "the MLflow run id: the resumed training is recorded as a new MLflow run" in out
    assert len(_runs(first_run)) == 2


def _weights(workdir: Path, name: str) -> dict[str, torch.Tensor]:
    (path,) = (workdir / "outputs" / name).glob("*/checkpoints/last.ckpt")
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize(
    ("fixed", "first", "second"),
    [
        ("trainer.max_epochs=null", "trainer.max_steps=22", "trainer.max_steps=44"),  # the case
        ("trainer.max_steps=-1", "trainer.max_epochs=1", "trainer.max_epochs=2"),
    ],
    ids=["max_steps", "max_epochs"],
)
def test_resume_at_an_epoch_boundary_equals_one_run(
    workdir: Path, fixed: str, first: str, second: str
) -> None:
    """quickstart has 22 batches an epoch, and dropout: the data order and the random stream must both match."""
    base = [
        "train",
        "experiment=quickstart",
        "optim.scheduler=constant",
        "optim.warmup_steps=0",
        *BASE[3:5],
        fixed,
    ]
    assert main([*base, first, "name=split"]) == 0
    assert main([*base, second, "name=split", "resume=true"]) == 0
    assert main([*base, second, "name=one"]) == 0
    done = [json.loads(p.read_text()) for p in sorted((workdir / "outputs").rglob("done.json"))]
    assert {d["epochs"] for d in done} == {2} and {d["global_step"] for d in done} == {44}
    split, one = _weights(workdir, "split"), _weights(workdir, "one")
    assert all(torch.equal(split[k], one[k]) for k in one)


def test_keys_of_another_schema_version_are_not_changes() -> None:
    from normia.training.resume_check import resume_changes

    now = OmegaConf.create(
        {"optim": {"lr": 0.1}, "trainer": {"max_steps": 9, "new_key": 1}, "model": {"w": 2}}
    )
    old = OmegaConf.create({"optim": {"lr": 0.1}, "trainer": {"max_steps": 5}, "model": {"w": 2}})
    assert resume_changes(now, old) == {"trainer.max_steps": (5, 9)}
    added = OmegaConf.create(
        {"optim": {"lr": 0.1}, "trainer": {"max_steps": 5}, "model": {"w": 2, "extra": 3}}
    )
    with pytest.raises(UserError, match=r"model.extra \(None -> 3\)"):
        resume_changes(added, old)


def test_resume_allow_changes_lets_chosen_keys_through_but_never_optimizer_values() -> None:
    from normia.training.resume_check import resume_changes

    old = OmegaConf.create(
        {"optim": {"lr": 0.1}, "data": {"batch_size": 64, "seed": 0}, "trainer": {"max_steps": 5}}
    )
    now = OmegaConf.create(
        {
            "optim": {"lr": 0.1},
            "data": {"batch_size": 32, "seed": 1},
            "trainer": {"max_steps": 5},
            "resume_allow_changes": ["data"],
        }
    )
    assert resume_changes(now, old) == {"data.batch_size": (64, 32), "data.seed": (0, 1)}
    now.optim.lr = 0.2
    now.resume_allow_changes = ["optim.lr", "data"]
    with pytest.raises(UserError, match=r"optim.lr \(0.1 -> 0.2\) changed, but the optimizer state"):
        resume_changes(now, old)


def _recorded(devices: int, batch: int, accumulate: int = 1) -> object:
    return OmegaConf.create(
        {
            "trainer": {
                "devices": devices,
                "num_nodes": 1,
                "accumulate_grad_batches": accumulate,
                "strategy": "fsdp",
            },
            "data": {"batch_size": batch},
            "optim": {"lr": 0.01},
        }
    )


@pytest.mark.parametrize("devices,batch,accumulate", [(3, 4, 1), (1, 12, 1), (1, 6, 2), (4, 3, 1)])
def test_another_world_size_with_the_same_global_batch_is_the_same_training(
    devices: int, batch: int, accumulate: int
) -> None:
    """Written on 2 ranks x 6 samples: resumed on any number of ranks that keeps 12 samples a step (the sampler
    continues the same global order), with the change recorded like any allowed one."""
    from normia.training.resume_check import resume_changes

    now = _recorded(devices, batch, accumulate)
    now.trainer.strategy = "ddp" if devices == 1 else "fsdp"
    changes = resume_changes(now, _recorded(2, 6))
    assert changes["trainer.devices"] == (2, devices)
    assert "trainer.strategy" not in changes  # DDP and FSDP train the same model


@pytest.mark.parametrize(
    "devices,batch,fix",
    [(5, 6, "a world size that divides 12"), (3, 6, "data.batch_size=4"), (4, 6, "data.batch_size=3")],
)
def test_another_global_batch_is_refused_with_the_batch_size_that_keeps_it(
    devices: int, batch: int, fix: str
) -> None:
    from normia.training.resume_check import resume_changes

    with pytest.raises(UserError, match=f"from 12 to {devices * batch}.*{fix}"):
        resume_changes(_recorded(devices, batch), _recorded(2, 6))
    # allowed on purpose: then it is the user's choice, and recorded
    allowed = _recorded(devices, batch)
    allowed.resume_allow_changes = ["trainer.devices"]
    assert resume_changes(allowed, _recorded(2, 6))["trainer.devices"] == (2, devices)
