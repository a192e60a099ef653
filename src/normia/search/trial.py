"""One trial = one ordinary normia run: the sampled values as overrides after the search's own, composed and validated
like `normia train` (a config that fails validation ends the trial as FAIL with the one-line reason), its own folder
<search folder>/trial-<n>, and its own MLflow run, a child of the search's parent run (tag mlflow.parentRunId) with
search.* tags. Its end is told to the study: COMPLETE with the run's result, PRUNED, or FAIL."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from normia.errors import UserError
from normia.search.claim import REASON_ATTR
from normia.search.plan import SearchPlan
from normia.search.space import override_text, parse_param

INTERRUPTED = 130


def trial_dir(plan: SearchPlan, number: int) -> Path:
    return Path(plan.search_dir) / f"trial-{number:04d}"


def trial_overrides(plan: SearchPlan, trial: Any) -> tuple[list[str], dict[str, Any]]:
    """(overrides, sampled values): the plan's overrides, each sampled key=value, and the search tags."""
    values = {
        key: parse_param(key, spec, plan.study_name).suggest(trial) for key, spec in plan.params.items()
    }
    overrides = [*plan.trial_overrides, *(f"{key}={override_text(value)}" for key, value in values.items())]
    tags = {"search.study": plan.study_name, "search.trial_number": str(trial.number)}
    tags.update({f"search.params.{key}": override_text(value) for key, value in values.items()})
    if plan.parent_run_id:
        tags["mlflow.parentRunId"] = plan.parent_run_id
    overrides.append("++tags={" + ", ".join(f"{k}: {_quoted(v)}" for k, v in tags.items()) + "}")
    return overrides, values


def _quoted(text: str) -> str:
    """A Hydra single-quoted string; `${` escaped so that it is never interpolated."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"


def run_trial(study: Any, trial: Any, plan: SearchPlan) -> str:
    """Run one claimed trial to its end and tell the study; returns its state name (COMPLETE, PRUNED, FAIL) or
    'INTERRUPTED' (Ctrl-C: the trial is FAIL and its parameters queued again, and the worker should stop)."""
    from optuna.trial import TrialState

    started = time.time()
    try:
        overrides, values = trial_overrides(plan, trial)
    except Exception as err:  # a stored space Optuna cannot sample (changed by hand): this trial fails
        return _fail(study, trial, f"cannot sample: {err}")
    shown = " ".join(f"{k}={override_text(v)}" for k, v in values.items())
    print(f"== trial {trial.number}: {shown}", flush=True)
    try:
        cfg = _compose(plan, overrides, trial.number)
    except UserError as err:
        return _fail(study, trial, f"invalid config: {err}")
    reporter = _reporter(trial, plan)
    try:
        code, result = _train(cfg, reporter)
    except UserError as err:
        return _fail(study, trial, str(err), reporter.run_id, plan)
    except Exception as err:  # a failing trial must not end the search: record it, go on
        traceback.print_exc()
        return _fail(
            study, trial, f"{type(err).__name__}: {' '.join(str(err).split())[:300]}", reporter.run_id, plan
        )
    trial.set_user_attr("search.output_dir", str(cfg.paths.output_dir))
    trial.set_user_attr("search.seconds", round(time.time() - started, 1))
    if reporter.run_id:
        trial.set_user_attr("search.run_id", reporter.run_id)
    if code == INTERRUPTED:
        _tag(plan, reporter.run_id, "FAIL")
        _fail(study, trial, "interrupted (Ctrl-C)")
        study.enqueue_trial(values, user_attrs={"search.retry_of": trial.number})
        return "INTERRUPTED"
    if code != 0:
        return _fail(study, trial, f"the run exited with code {code}", reporter.run_id, plan)
    if reporter.pruned_at is not None:
        trial.set_user_attr("search.pruned_at_validation", reporter.pruned_at)
        _tag(plan, reporter.run_id, "PRUNED")
        study.tell(trial, state=TrialState.PRUNED)
        return "PRUNED"
    if result is None:
        return _fail(study, trial, f"the run reported no {plan.monitor}", reporter.run_id, plan)
    _tag(plan, reporter.run_id, "COMPLETE")
    study.tell(trial, result)
    print(f"== trial {trial.number}: COMPLETE {plan.monitor}={result:.4f}", flush=True)
    return "COMPLETE"


def _compose(plan: SearchPlan, overrides: list[str], number: int) -> Any:
    """Compose and validate like `normia train`, then fix the trial's folder and the search's MLflow store."""
    from normia.config.compose import compose_job
    from normia.training.preflight import preflight_local

    cfg = compose_job(overrides)
    cfg.paths.output_dir = str(trial_dir(plan, number))
    if plan.tracking_uri and cfg.logger.name == "mlflow":
        cfg.logger.tracking_uri = plan.tracking_uri
    if int(cfg.trainer.devices) * int(cfg.trainer.num_nodes) > 1:
        raise UserError("a search trial runs in one process: set trainer.devices=1 (run K workers instead)")
    preflight_local(cfg)
    return cfg


def _reporter(trial: Any, plan: SearchPlan) -> Any:
    from normia.search.pruning import TrialReporter

    return TrialReporter(trial, plan.monitor, prune=str(plan.pruner.get("name", "median")) != "none")


def _train(cfg: Any, reporter: Any) -> tuple[int, float | None]:
    """run_job with the reporter on the Trainer; (exit code, the run's result from done.json)."""
    from normia.training.callbacks import extra_callbacks
    from normia.training.cli import run_job
    from normia.training.health import TrainingDiverged

    try:
        with extra_callbacks(lambda cfg, tracker: reporter):
            code = run_job(cfg)
    except TrainingDiverged as err:
        raise UserError(f"diverged: {err}") from None
    done = Path(cfg.paths.output_dir) / "done.json"
    result = json.loads(done.read_text()).get("result") if done.is_file() else None
    return code, float(result) if isinstance(result, (int, float)) else None


def _fail(
    study: Any, trial: Any, reason: str, run_id: str | None = None, plan: SearchPlan | None = None
) -> str:
    from optuna.trial import TrialState

    print(f"== trial {trial.number}: FAIL {reason}", file=sys.stderr, flush=True)
    trial.set_user_attr(REASON_ATTR, reason[:500])
    if plan is not None:
        _tag(plan, run_id, "FAIL")
    study.tell(trial, state=TrialState.FAIL)
    return "FAIL"


def _tag(plan: SearchPlan, run_id: str | None, state: str) -> None:
    """search.state on the trial's MLflow run (it ended FINISHED, or FAILED for a failed run)."""
    if not run_id or not plan.tracking_uri:
        return
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=plan.tracking_uri).set_tag(run_id, "search.state", state)
    except (
        Exception
    ) as err:  # the trial's outcome is in the study; a tag that cannot be written is only noted
        print(f"warning: could not tag MLflow run {run_id}: {err}", file=sys.stderr, flush=True)
