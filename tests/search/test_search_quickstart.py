"""The issue's main case: 12 trials, 2 local workers, the quickstart's space; the best trial beats the default config
trained with the same budget (measured in this test), and everything the search promises is there: exactly 12
finished trials, one MLflow parent run with a child per trial (trial number, params and state as tags), the table
and best trial printed, trials.csv and the three plots logged to the parent run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from search_helpers import QUIET, states, study_trials

EPOCHS = ["trainer.max_epochs=2"]  # the same short budget for the default run and every trial


@pytest.mark.slow
def test_twelve_trials_two_workers_beat_the_default(workdir: Path, normia_cli) -> None:
    default = normia_cli(
        "train", "experiment=quickstart", *EPOCHS, *QUIET, "paths.output_dir=outputs/default", cwd=workdir
    )
    assert default.returncode == 0, default.stderr[-3000:]
    default_acc = json.loads((workdir / "outputs/default/done.json").read_text())["result"]

    result = normia_cli(
        "search",
        "experiment=quickstart",
        "search=quickstart",
        "n_trials=12",
        "workers=2",
        *EPOCHS,
        *QUIET,
        cwd=workdir,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    study = "quickstart-quickstart"
    search_dir = workdir / "outputs" / "search" / study
    trials = study_trials(search_dir, study)
    by_state = states(trials)
    assert by_state.get("COMPLETE", 0) + by_state.get("PRUNED", 0) == 12, by_state
    assert by_state.get("RUNNING", 0) == 0
    workers = {t.user_attrs["search.worker"] for t in trials}
    assert len(workers) == 2, workers  # both workers pulled trials
    best = max(t.value for t in trials if t.state.name == "COMPLETE")
    print(f"default val/acc {default_acc:.4f}, best of the search {best:.4f}")
    assert best > default_acc

    assert f"== search '{study}': 12 of 12 trials finished" in out
    assert "best: trial " in out and f"val/acc {best:.4f}" in out
    rows = list(csv.DictReader((search_dir / "trials.csv").read_text().splitlines()))
    assert len(rows) == len(trials) and {"optim.lr", "model.hidden", "state", "value"} <= set(rows[0])
    for plot in ("optimization_history", "parallel_coordinate", "param_importances"):
        assert (search_dir / f"{plot}.png").stat().st_size > 5000

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.info.run_name == study]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["search/best_value"] == pytest.approx(best)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(trials)
    numbers = sorted(int(r.data.tags["search.trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in trials)
    # the best trial's own run is printed, not only the parent (issue 25)
    printed = out.split("best trial's MLflow run: ")[1].split()[0]
    [best_run] = [r for r in children if r.info.run_id == printed]
    assert best_run.data.metrics["val/acc"] == pytest.approx(best)
    for run in children:
        assert run.data.tags["search.state"] in ("COMPLETE", "PRUNED")
        assert "search.params.optim.lr" in run.data.tags
    logged = {f.path for f in client.list_artifacts(parent.info.run_id, "search")}
    assert {"search/trials.csv", "search/optimization_history.png", "search/param_importances.png"} <= logged
