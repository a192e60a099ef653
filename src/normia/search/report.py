"""The end of a search: the RUNNING trials of dead workers failed and re-queued, the best trial and the table printed,
trials.csv and the plots written and logged to the MLflow parent run, which ends FINISHED (or KILLED when the study
is not complete); exit 1 when the study has fewer than N finished trials (re-run the command to continue)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from normia.search.storage import shown_storage


def finish(study: Any, plan: Any, code: int) -> int:
    """Fail the trials of dead workers, print the best trial and the table, write the outputs, close the parent."""
    from normia.search.claim import claim_lock, counts, requeue_dead
    from normia.search.outputs import best_trial, format_table, trial_rows, write_csv, write_plots

    with claim_lock(plan.search_dir):
        failed = requeue_dead(study, plan.tracking_uri)
    for number in failed:
        print(f"  trial {number}: its worker died; marked FAIL, its parameters queued again", file=sys.stderr)
    by_state = counts(study)
    finished = by_state.get("COMPLETE", 0) + by_state.get("PRUNED", 0)
    rows = trial_rows(study)
    folder = Path(plan.search_dir)
    files = [write_csv(rows, folder / "trials.csv")]
    plots, skipped = write_plots(study, folder)
    files += plots
    best = best_trial(study)
    print(
        f"== search '{plan.study_name}': {finished} of {plan.n_trials} trials finished "
        + _counts_text(by_state)
    )
    print(format_table(rows, plan.monitor))
    if best is not None:
        shown = " ".join(f"{k}={v}" for k, v in best["params"].items())
        print(f"best: trial {best['number']}  {plan.monitor} {best['value']:.4f}  {shown}")
    else:
        print("best: none (no trial completed)")
    print(f"  outputs: {', '.join(str(f.name) for f in files)} in {folder}")
    for note in skipped:
        print(f"  plot skipped: {note}")
    incomplete = finished < plan.n_trials
    if plan.parent_run_id and plan.tracking_uri:
        from normia.search.parent_run import close_parent_run

        status = "KILLED" if (incomplete or code == 130) else "FINISHED"
        close_parent_run(plan.tracking_uri, plan.parent_run_id, best, files, by_state, status)
        print(f"  mlflow: parent run {plan.parent_run_id} in {shown_storage(plan.tracking_uri)}")
    if code:
        return code
    if incomplete:
        print(
            f"error: the study has {finished} of {plan.n_trials} finished trials; re-run the same command to "
            "continue it",
            file=sys.stderr,
        )
        return 1
    return 0


def _counts_text(by_state: dict[str, int]) -> str:
    order = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
    return "(" + ", ".join(f"{by_state[s]} {s.lower()}" for s in order if by_state.get(s)) + ")"
