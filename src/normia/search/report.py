"""The end of a search: the RUNNING trials of dead workers failed and re-queued, the best trial and the table printed,
trials.csv and the plots written and logged to the MLflow parent run, which ends FINISHED (KILLED when the study is
not complete, FAILED when its trials failed too often to go on); exit 1 when the study has fewer than N finished
trials: re-run the command to continue it, or, when the failures reached the search's limit (workers then claim no
trial, so a re-run would run nothing), the first failure's reason and what to change."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from normia.search.claim import REASON_ATTR
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
        if best.get("run_id"):  # the run to open, predict with, export or reproduce (issue 25 D)
            print(
                f"  best trial's MLflow run: {best['run_id']}  (normia predict/export run={best['run_id']})"
            )
    else:
        print("best: none (no trial completed)")
    print(f"  outputs: {', '.join(str(f.name) for f in files)} in {folder}")
    for note in skipped:
        print(f"  plot skipped: {note}")
    incomplete = finished < plan.n_trials
    stopped = incomplete and failed_out(by_state, plan.max_failures)
    if plan.parent_run_id and plan.tracking_uri:
        from normia.search.parent_run import close_parent_run

        status = "FAILED" if stopped else "KILLED" if (incomplete or code == 130) else "FINISHED"
        close_parent_run(plan.tracking_uri, plan.parent_run_id, best, files, by_state, status)
        print(f"  mlflow: parent run {plan.parent_run_id} in {shown_storage(plan.tracking_uri)}")
    if code:
        return code
    if stopped:
        print(f"error: {failures_text(study, plan, by_state)}", file=sys.stderr)
        return 1
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


def failed_out(by_state: dict[str, int], max_failures: int) -> bool:
    """Whether the failures reached the search's limit: claim_next() then gives no trial, so no worker runs one."""
    return bool(max_failures) and by_state.get("FAIL", 0) >= max_failures


def failures_text(study: Any, plan: Any, by_state: dict[str, int]) -> str:
    """One line: how many trials failed, the first failure's reason, what to change, and that this study runs no
    more trials (its failures stay counted), so the search goes on under a new study name."""
    fails = by_state.get("FAIL", 0)
    finished = by_state.get("COMPLETE", 0) + by_state.get("PRUNED", 0)
    first = min(
        (t for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"), key=lambda t: t.number
    )
    reason = " ".join(str(first.user_attrs.get(REASON_ATTR, "no reason recorded")).split())
    if finished == 0:
        head = f"every trial failed ({fails} of {fails})"
    else:
        head = f"{fails} trials failed, the search's limit, with {finished} of {plan.n_trials} finished"
    return (
        f"{head}; the first, trial {first.number}: {_clipped(reason)}; {_advice(reason, first, plan)}, then run "
        f"the search with a new study_name=NAME (or delete {plan.search_dir}): this study has reached its "
        f"{plan.max_failures} failures and runs no more trials"
    )


def _advice(reason: str, first: Any, plan: Any) -> str:
    """What to change, from the kind of the first failure."""
    if "diverged" in reason:
        return "lower the learning rate (its range in the space, or optim.lr)"
    if reason.startswith(("invalid config", "cannot sample")):
        return "fix the values of the space file or the overrides"
    where = first.user_attrs.get("search.output_dir") or str(Path(plan.search_dir) / "worker-*.log")
    run = first.user_attrs.get("search.run_id")
    return f"see why in {where}" + (f" (MLflow run {run})" if run else "") + " and fix it"


def _clipped(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
