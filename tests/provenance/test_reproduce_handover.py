"""Issue 25 C: a reproduction is judged by a tolerance that fits how the run was made (and says which), --help
gives the defaults, and a reproduction of a search trial is its own run, not a second child of the search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from normia.reproduce import _parser, own_tags, verdict
from normia.reproduce_tolerance import FLOAT32_RTOL, HALF_RTOL, default_rtol


@pytest.mark.parametrize(
    ("trainer", "rtol"),
    [
        ({"deterministic": True, "precision": "32-true"}, 0.0),
        ({"deterministic": True, "precision": "bf16-mixed"}, 0.0),
        ({"deterministic": False, "precision": "32-true"}, FLOAT32_RTOL),
        ({"deterministic": False, "precision": "bf16-mixed"}, HALF_RTOL),
        ({"deterministic": "warn", "precision": "16-mixed"}, HALF_RTOL),
    ],
)
def test_the_default_tolerance_follows_how_the_run_was_made(trainer: dict, rtol: float) -> None:
    chosen, why = default_rtol(OmegaConf.create({"trainer": trainer}))
    assert chosen == rtol
    assert f"trainer.deterministic={str(trainer['deterministic']).lower()}" in why


def test_a_rounding_drift_of_a_nondeterministic_run_is_a_reproduction_and_the_verdict_says_why() -> None:
    """The failure example: 3e-8 relative after one epoch with deterministic=false was called 'differs'."""
    from normia.reproduce import compare

    rtol, why = default_rtol(OmegaConf.create({"trainer": {"deterministic": False, "precision": "32-true"}}))
    _, same = compare({"val/loss": 0.4321}, {"val/loss": 0.4321 * (1 + 3e-8)}, rtol)
    assert same
    [line] = verdict(same, rtol, [], why)
    assert line.startswith("result: identical (reproduced: every metric within rtol=0.0001;")
    assert "trainer.deterministic=false" in line and "--rtol" in line
    _, same = compare({"val/loss": 0.4321}, {"val/loss": 0.44}, rtol)
    assert verdict(same, rtol, [], why)[0].startswith("result: differs (metrics differ beyond rtol=0.0001;")


def test_help_gives_the_defaults() -> None:
    text = " ".join(_parser().format_help().split())
    assert "default: 0 for a run made with trainer.deterministic=true, else 1e-4" in text
    assert "(default: off)" in text and "(default: $MLFLOW_TRACKING_URI" in text


def test_tags_placing_a_run_in_a_search_are_not_inherited() -> None:
    recorded = OmegaConf.create(
        {"mlflow.parentRunId": "abc", "search.trial_number": "1", "search.params.lr": "0.1", "team": "pm10"}
    )
    assert own_tags(recorded) == {"team": "pm10"}
    assert own_tags(None) == {}


@pytest.mark.slow
def test_a_reproduced_search_trial_is_its_own_run_linked_by_a_tag(normia_cli, workdir: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    parent = client.create_run(client.create_experiment("quickstart")).info.run_id
    client.set_terminated(parent)
    trained = normia_cli(
        "train", "experiment=quickstart", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
        "logger.system_metrics=false", f"++tags={{mlflow.parentRunId: {parent}, search.trial_number: '1'}}",
        cwd=workdir, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    [done] = workdir.glob("outputs/*/*/done.json")
    trial = json.loads(done.read_text())["mlflow_run_id"]
    assert client.get_run(trial).data.tags["mlflow.parentRunId"] == parent  # the trial, as a search makes it

    reproduced = normia_cli("reproduce", trial, cwd=workdir, timeout=300)
    assert reproduced.returncode == 0, reproduced.stdout[-2000:] + reproduced.stderr[-3000:]
    children = [r for r in client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
                if r.data.tags.get("mlflow.parentRunId") == parent]  # fmt: skip
    assert [r.info.run_id for r in children] == [trial], "the search would show two 'trial 1' children"
    [copy] = [
        r
        for r in client.search_runs([children[0].info.experiment_id])
        if r.info.run_id not in (trial, parent)
    ]
    assert copy.data.tags["normia.reproduced_from"] == trial
    assert not any(key.startswith("search.") for key in copy.data.tags)


@pytest.mark.slow
def test_a_store_copied_with_its_mlruns_folder_reproduces_where_it_was_copied(
    normia_cli, workdir: Path
) -> None:
    """The failure example: mlflow.db copied with mlruns/ beside it; the artifacts were looked for at the original
    absolute path and the error guessed that mlruns/ was not copied."""
    import shutil

    here = workdir / "alice"
    here.mkdir()
    trained = normia_cli(
        "train", "experiment=quickstart", "trainer.max_steps=3", "trainer.enable_progress_bar=false",
        "logger.system_metrics=false", cwd=here, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    [done] = here.glob("outputs/*/*/done.json")
    run_id = json.loads(done.read_text())["mlflow_run_id"]
    partner = workdir / "bob"
    partner.mkdir()
    shutil.copy(here / "mlflow.db", partner / "mlflow.db")
    shutil.copytree(here / "mlruns", partner / "mlruns")
    shutil.copytree(
        here / "outputs", partner / "outputs"
    )  # what reproduce does not need, a colleague may copy too
    (here / "mlruns").rename(here / "gone")  # as on the colleague's machine: the recorded path does not exist

    result = normia_cli("reproduce", run_id, cwd=partner, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"note: the artifacts of run {run_id} are read from {partner / 'mlruns'}" in result.stdout
    assert "note: the re-run is logged to experiment 'quickstart-copy'" in result.stdout
    assert "result: identical" in result.stdout
    assert not (here / "mlruns").exists(), "the re-run wrote into the other machine's path"
    client = MlflowClient(tracking_uri=f"sqlite:///{partner / 'mlflow.db'}")
    [copy] = client.search_runs([client.get_experiment_by_name("quickstart-copy").experiment_id])
    assert copy.data.tags["normia.reproduced_from"] == run_id
    assert Path(copy.info.artifact_uri.removeprefix("file://")).is_relative_to(partner / "mlruns")
