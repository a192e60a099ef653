"""The search's MLflow parent run (name = study): each trial's run is its child (tag mlflow.parentRunId). Created at
the first run of the search, reopened (status RUNNING again) when the search is resumed; at the end it gets the
best value and parameters (metric search/best_value, tags search.best.*) and the outputs as artifacts.

The parent is RUNNING only while a `normia search` runs its trials: report.finish() ends it, and a search that stops
on an exception (a crash, a refused job array) puts a reopened parent back to the status it had (a finished search
stays finished) or ends a new one FAILED (KILLED on Ctrl-C): ended_on_error()."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

END_STATUSES = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class ParentRun:
    """run_id: the parent run; earlier_status: its end status before this search reopened it (None: created by this
    search, or left RUNNING by a search that died): what it goes back to if this search stops on an exception."""

    run_id: str
    earlier_status: str | None = None


def open_parent_run(
    tracking_uri: str, experiment_name: str, study_name: str, run_id: str | None, tags: dict[str, str]
) -> ParentRun:
    """The parent run: run_id reopened (RUNNING), or a new run in the experiment (created when missing)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if run_id:
        earlier = client.get_run(run_id).info.status
        client.update_run(run_id, status="RUNNING")
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        return ParentRun(run_id, earlier if earlier in END_STATUSES else None)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id if experiment is not None else client.create_experiment(experiment_name)
    )
    run = client.create_run(experiment_id, run_name=study_name, tags=tags)
    return ParentRun(str(run.info.run_id))


@contextlib.contextmanager
def ended_on_error(tracking_uri: str | None, parent: ParentRun | None) -> Iterator[None]:
    """Around everything a search does after opening its parent: on any exception (Ctrl-C included) a parent still
    RUNNING is put back to its earlier end status, or ended FAILED (KILLED on Ctrl-C) when this search created it;
    then the exception goes on. Without this a crashed search left its parent RUNNING for ever."""
    try:
        yield
    except BaseException as err:
        if parent is not None and tracking_uri:
            _end_after_error(tracking_uri, parent, isinstance(err, KeyboardInterrupt))
        raise


def _end_after_error(tracking_uri: str, parent: ParentRun, interrupted: bool) -> None:
    """Leave alone a parent that finish() already ended or that was deleted (a refused new search); the earlier
    status is restored with its end time (update_run keeps it): the finished search looks untouched."""
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        info = client.get_run(parent.run_id).info
        if info.status != "RUNNING" or info.lifecycle_stage == "deleted":
            return
        if parent.earlier_status is not None:
            client.update_run(parent.run_id, status=parent.earlier_status)
        else:
            client.set_terminated(parent.run_id, status="KILLED" if interrupted else "FAILED")
    except Exception as err:  # the search's own error is the one to show; this is only a note
        print(f"warning: could not end the MLflow parent run {parent.run_id}: {err}", file=sys.stderr)


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
