"""The search's MLflow parent run (name = study): each trial's run is its child (tag mlflow.parentRunId). Created at
the first run of the search, reopened (status RUNNING again) when the search is resumed; at the end it gets the
best value and parameters (metric search/best_value, tags search.best.*) and the outputs as artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_parent_run(
    tracking_uri: str, experiment_name: str, study_name: str, run_id: str | None, tags: dict[str, str]
) -> str:
    """The parent run's id: run_id reopened, or a new run in the experiment (created when missing)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        return run_id
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id if experiment is not None else client.create_experiment(experiment_name)
    )
    run = client.create_run(experiment_id, run_name=study_name, tags=tags)
    return str(run.info.run_id)


def close_parent_run(
    tracking_uri: str,
    run_id: str,
    best: dict[str, Any] | None,
    files: list[Path],
    counts: dict[str, int],
    status: str = "FINISHED",
) -> None:
    """Log the best trial, the state counts and the output files, then end the run with `status`."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for state, count in counts.items():
        client.log_metric(run_id, f"search/{state.lower()}", count)
    if best is not None:
        client.log_metric(run_id, "search/best_value", float(best["value"]))
        client.set_tag(run_id, "search.best.trial_number", str(best["number"]))
        for key, value in best["params"].items():
            client.set_tag(run_id, f"search.best.params.{key}", str(value))
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="search")
    client.set_terminated(run_id, status=status)
