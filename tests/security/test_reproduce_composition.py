"""Issue 26 B: a recorded run must not choose what is composed.

The exploit: a recorded `hydra.searchpath=[file:///shared/...]` made Hydra load an experiment from a shared folder
that set `trusted_targets`, and a recorded `***` was filled from that composition with a list holding a
`pandas.read_pickle` target; the reproduce ended normally. Now recorded `hydra.*` and `trusted_targets` overrides
are refused, `***` is filled only with a scalar at a secret key, and the final config is checked as a whole.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from normia.config.trust import untrusted_overrides
from normia.config.unmask import fill_masked
from normia.errors import UserError

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]


@pytest.mark.parametrize(
    "override",
    [
        "hydra.searchpath=[file:///shared/configs]",
        "+hydra.searchpath=[file:///shared/configs]",
        "++hydra.job.chdir=true",
        "hydra/job_logging=disabled",
        "+experiment@hydra=evil",
        "trusted_targets=[pandas.]",
        "+trusted_targets=[pandas.]",
        "++trusted_targets=[pandas.]",
        "~trusted_targets",
        "+extra@trusted_targets=evil",
    ],
)
def test_recorded_overrides_that_choose_the_composition_or_vouch_for_code_are_refused(override: str) -> None:
    with pytest.raises(
        UserError, match=r"^run abc overrides\.yaml: the recorded override .* nothing was run"
    ):
        untrusted_overrides(["experiment=quickstart", override], "run abc overrides.yaml")
    assert untrusted_overrides([override], "x", trust=True) == [override]


def test_ordinary_recorded_overrides_pass() -> None:
    texts = ["experiment=quickstart", "optim.lr=1e-3", "+tags.team=vision", "model=mlp"]
    assert untrusted_overrides(texts, "run abc overrides.yaml") == texts


def test_a_mask_is_filled_only_at_a_secret_key_and_only_with_a_plain_value() -> None:
    recorded = {"logger": {"api_key": "***", "password": "***"}, "tags": {"note": "***"}}
    today = {"logger": {"api_key": "k-123", "password": None}, "tags": {"note": "plain"}}
    cfg = OmegaConf.create(recorded)
    assert fill_masked(cfg, recorded, today) == ["logger.api_key"]
    assert cfg.logger.api_key == "k-123"
    assert cfg.logger.password == "***" and cfg.tags.note == "***"


@pytest.mark.parametrize(
    "value",
    [
        [{"_target_": "pandas.read_pickle", "filepath_or_buffer": "/shared/evil.pkl"}],
        {"_target_": "pandas.read_pickle", "filepath_or_buffer": "/shared/evil.pkl"},
    ],
)
@pytest.mark.parametrize("key", ["callbacks.x", "logger.api_key"])
def test_a_mask_is_never_filled_with_config(key: str, value: object) -> None:
    recorded = {"callbacks": {"x": "***"}, "logger": {"api_key": "***"}}
    today = {"callbacks": {"x": "a"}, "logger": {"api_key": "k"}}
    first, leaf = key.split(".")
    today[first][leaf] = value
    with pytest.raises(UserError, match=rf"run abc config.yaml: {key} is \*\*\* \(masked\) in the record"):
        fill_masked(OmegaConf.create(recorded), recorded, today, "run abc config.yaml")


def test_reproduce_does_not_fill_a_mask_with_a_list_from_todays_composition(workdir: Path) -> None:
    """Issue 26 B's second step without the searchpath: a `***` in the record where the recorded overrides compose
    a list of targets (here an allowed one) is refused, not filled."""
    from normia.config.compose import compose_job
    from normia.config.secrets import redact
    from normia.reproduce import build_job

    recorded = OmegaConf.create(OmegaConf.to_container(redact(compose_job(["experiment=quickstart"]))))
    recorded.callbacks.x = "***"
    overrides = ["experiment=quickstart", "+callbacks.x=[{_target_: lightning.pytorch.callbacks.Timer}]"]
    with pytest.raises(UserError, match=r"callbacks\.x is \*\*\* \(masked\)"):
        build_job(recorded, overrides, "abc", f"sqlite:///{workdir / 'mlflow.db'}")
    assert not (workdir / "outputs").exists()


class _Plant:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _replace_artifact(client, run_id: str, name: str, text: str, folder: Path) -> None:
    path = folder / "plant" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    client.log_artifact(run_id, str(path))


def test_reproduce_of_the_searchpath_exploit_runs_nothing(
    workdir: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from normia.cli import main

    args = ["train", "experiment=quickstart", "trainer.max_steps=2", "trainer.max_epochs=1", *FAST]
    assert main([*args, f"logger.tracking_uri={mlflow_server}"]) == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("quickstart").experiment_id
    (run,) = client.search_runs([experiment])
    run_id = run.info.run_id

    shared = workdir / "shared"
    canary = workdir / "canary"
    (shared / "experiment").mkdir(parents=True)
    (shared / "evil.pkl").write_bytes(pickle.dumps(_Plant(str(canary))))
    (shared / "experiment" / "evil.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /model: mlp\n  - override /data: digits\n  - override /optim: adamw\n"
        "  - override /trainer: cpu\n"
        "name: quickstart\ntrusted_targets: [pandas.]\n"
        f"callbacks:\n  x:\n    - _target_: pandas.read_pickle\n      filepath_or_buffer: {shared / 'evil.pkl'}\n"
    )
    config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", str(workdir))).read_text())
    config["callbacks"]["x"] = "***"
    _replace_artifact(client, run_id, "config.yaml", yaml.safe_dump(config), workdir)
    overrides = ["experiment=evil", f"hydra.searchpath=[file://{shared}]", *FAST]
    _replace_artifact(client, run_id, "overrides.yaml", yaml.safe_dump(overrides), workdir)
    capsys.readouterr()
    assert main(["reproduce", run_id, "--tracking-uri", mlflow_server]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "hydra.searchpath" in lines[0], lines
    assert not canary.exists() and len(client.search_runs([experiment])) == 1

    # F: the run's overrides.yaml as an alias bomb is refused before it is expanded
    bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    _replace_artifact(client, run_id, "overrides.yaml", bomb, workdir)
    assert main(["reproduce", run_id, "--tracking-uri", mlflow_server]) == 2
    err = capsys.readouterr().err
    assert "overrides.yaml uses YAML anchors or aliases" in err and len(client.search_runs([experiment])) == 1

    # A through reproduce: torch.load reached through a normia module, on the attacker's pickle
    config["callbacks"].pop("x")
    config["model"]["dropout"] = {
        "_target_": "normia.training.checkpoint.torch.load",
        "f": str(shared / "evil.pkl"),
        "weights_only": False,
    }
    _replace_artifact(client, run_id, "config.yaml", yaml.safe_dump(config), workdir)
    _replace_artifact(
        client, run_id, "overrides.yaml", yaml.safe_dump(["experiment=quickstart", *FAST]), workdir
    )
    assert main(["reproduce", run_id, "--tracking-uri", mlflow_server]) == 2
    err = capsys.readouterr().err
    assert "model.dropout._target_='normia.training.checkpoint.torch.load' is not one of normia's" in err
    assert not canary.exists() and len(client.search_runs([experiment])) == 1
