"""Issue 16 A/B through `normia reproduce`: a store writer plants code or a resolver in a recorded run's artifacts.

The artifacts are replaced through MLflow's own client (what anyone who can write to a shared store can do), in the
embedded sqlite store and on a real local `mlflow server`; the reproduce must refuse before importing or instantiating
anything (the canary file is never created), read no secret, and create no new MLflow run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from normia.cli import main

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]


@pytest.fixture(params=["sqlite", "server"])
def store(request, workdir: Path) -> str:
    """The tracking URI of the store the attacker writes to: the embedded sqlite file, or a real mlflow server."""
    if request.param == "server":
        return request.getfixturevalue("mlflow_server")
    return f"sqlite:///{workdir / 'mlflow.db'}"


def _reproduce(run_id: str, store: str) -> int:
    return main(["reproduce", run_id, "--tracking-uri", store])


def _recorded_run(store: str) -> tuple[MlflowClient, str]:
    args = ["train", "experiment=quickstart", "trainer.max_steps=2", "trainer.max_epochs=1", *FAST]
    assert main([*args, f"logger.tracking_uri={store}"]) == 0
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs(client.get_experiment_by_name("quickstart").experiment_id)
    return client, run.info.run_id


def _replace_artifact(client: MlflowClient, run_id: str, name: str, content: object, tmp: Path) -> None:
    path = tmp / "plant" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    client.log_artifact(run_id, str(path))


def _runs(client: MlflowClient) -> int:
    return len(client.search_runs(client.get_experiment_by_name("quickstart").experiment_id))


def test_reproduce_refuses_planted_code_in_the_recorded_config(workdir: Path, store: str, capsys) -> None:
    client, run_id = _recorded_run(store)
    canary = workdir / "canary"
    config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", str(workdir))).read_text())
    config["model"]["dropout"] = {"_target_": "builtins.open", "file": str(canary), "mode": "w"}
    _replace_artifact(client, run_id, "config.yaml", config, workdir)
    capsys.readouterr()
    assert _reproduce(run_id, store) == 2
    err = capsys.readouterr().err
    assert (
        "model.dropout._target_='builtins.open' names code outside the allowed targets" in err
        and "--trust" in err
    )
    assert not canary.exists() and _runs(client) == 1


def test_reproduce_refuses_a_resolver_in_the_recorded_overrides_and_reads_no_secret(
    workdir: Path, store: str, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("NORMIA_CANARY_SECRET", "s3cr3t-value")
    client, run_id = _recorded_run(store)
    _replace_artifact(
        client, run_id, "overrides.yaml", ["experiment=quickstart", "tags.note=${oc.env:NORMIA_CANARY_SECRET,none}"],
        workdir,
    )  # fmt: skip
    capsys.readouterr()
    assert _reproduce(run_id, store) == 2
    out = capsys.readouterr()
    assert "calls the resolver '${oc.env:...}'" in out.err
    assert "s3cr3t-value" not in out.out + out.err and _runs(client) == 1


def test_a_recorded_run_cannot_trust_its_own_planted_target(workdir: Path, store: str, capsys) -> None:
    """A recorded `trusted_targets=[builtins.]` override is refused (issue 26 B; it was dropped before)."""
    client, run_id = _recorded_run(store)
    canary = workdir / "canary"
    planted = [
        "experiment=quickstart",
        "trusted_targets=[builtins.]",
        f"+callbacks.evil={{_target_: builtins.open, file: {canary}, mode: w}}",
    ]
    _replace_artifact(client, run_id, "overrides.yaml", planted, workdir)
    capsys.readouterr()
    assert _reproduce(run_id, store) == 2
    assert "the recorded override 'trusted_targets=...' sets trusted_targets" in capsys.readouterr().err
    assert not canary.exists() and _runs(client) == 1
