"""The median pruner stops a hopeless trial at its first validation: the trial is PRUNED in the study with fewer
validations than the others, its MLflow run ends FINISHED with tag search.state=PRUNED, and the worker goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import QUIET, states, study_trials

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
