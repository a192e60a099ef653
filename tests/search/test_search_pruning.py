"""The median pruner stops a hopeless trial at its first validation: the trial is PRUNED in the study with fewer
validations than the others, its MLflow run ends FINISHED with tag search.state=PRUNED, and the worker goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from search_helpers import QUIET, states, study_trials

EPOCHS = 3
# Random draws with the quickstart's seed (42): lr 4.8e-5, 1.8e-2, 1.9e-3, 4.8e-4, 5.0e-6. The last learns nothing
# in 3 epochs (val/acc near chance) and is below the median of the earlier trials at its first validation.
SPACE = """params:
  optim.lr: {type: log-float, low: 1.0e-6, high: 3.0e-2}
pruner: {name: median, n_startup_trials: 1, n_warmup_steps: 0}
sampler: {name: random}
"""


@pytest.mark.slow
def test_median_pruner_stops_a_hopeless_trial(workdir: Path, space_dir: Path, normia_cli) -> None:
    (space_dir / "search" / "prune.yaml").write_text(SPACE)
    result = normia_cli(
        "search",
        "experiment=quickstart",
        "search=prune",
        "n_trials=5",
        "workers=1",
        f"trainer.max_epochs={EPOCHS}",
        *QUIET,
        cwd=workdir,
        env={"NORMIA_CONFIG_PATH": str(space_dir)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    search_dir = workdir / "outputs" / "search" / "quickstart-prune"
    trials = study_trials(search_dir, "quickstart-prune")
    assert set(states(trials)) <= {"COMPLETE", "PRUNED"} and len(trials) == 5
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, f"no trial was pruned: {[(t.params, t.state.name) for t in trials]}"
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    for trial in pruned:
        assert trial.params["optim.lr"] < 1e-3  # the slow learners
        assert max(trial.intermediate_values.values()) < max(t.value for t in complete)
        assert len(trial.intermediate_values) < EPOCHS  # stopped early
        assert trial.user_attrs["search.pruned_at_validation"] == len(trial.intermediate_values)
    assert all(len(t.intermediate_values) == EPOCHS for t in complete)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run = client.get_run(pruned[0].user_attrs["search.run_id"])
    assert run.data.tags["search.state"] == "PRUNED"
    assert run.info.status == "FINISHED"
    done = json.loads((Path(pruned[0].user_attrs["search.output_dir"]) / "done.json").read_text())
    assert done["result"] < max(t.value for t in complete)
    assert "PRUNED" in result.stdout and "best: trial" in result.stdout


BROKEN = """params:
  optim.name: {type: categorical, choices: [adamw, adamx]}
sampler: {name: random}
pruner: none
"""


@pytest.mark.slow
def test_a_sampled_config_that_fails_validation_fails_its_trial_only(
    workdir: Path, space_dir: Path, normia_cli
) -> None:
    """'adamx' is not an optimizer: its trials FAIL with the one-line reason and no run; the study still reaches N,
    here in an RDB storage (sqlite) instead of the journal file."""
    (space_dir / "search" / "broken.yaml").write_text(BROKEN)
    result = normia_cli(
        "search",
        "experiment=quickstart",
        "search=broken",
        "n_trials=2",
        "storage=sqlite:///study.db",
        "trainer.max_epochs=1",
        *QUIET,
        cwd=workdir,
        env={"NORMIA_CONFIG_PATH": str(space_dir)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import optuna

    trials = optuna.load_study(
        study_name="quickstart-broken", storage=f"sqlite:///{workdir / 'study.db'}"
    ).get_trials(deepcopy=False)
    assert states(trials).get("COMPLETE") == 2
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed, [(t.params, t.state.name) for t in trials]  # random draws with seed 42 include adamx
    for trial in failed:
        assert trial.params["optim.name"] == "adamx"
        reason = trial.user_attrs["search.fail_reason"]
        assert reason.startswith("invalid config: optim.name='adamx' is not valid (did you mean")
        assert "search.run_id" not in trial.user_attrs
        assert not (
            workdir / "outputs" / "search" / "quickstart-broken" / f"trial-{trial.number:04d}"
        ).exists()
    assert "FAIL" in result.stdout
