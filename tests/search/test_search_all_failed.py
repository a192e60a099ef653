"""Every trial of a search failed (issue 25, A4): the failures reached the search's limit, so its workers claim no
more trials and a re-run of the same command runs nothing. The search must not say "re-run the same command to
continue it": it says that every trial failed, the first failure's one-line reason and what to change, exits 1, ends
its MLflow parent FAILED, and a re-run says the same. A real Optuna journal study and a real MLflow store in
tmp_path; the trials are told FAIL by hand with the reasons the workers store (search.fail_reason)."""

from __future__ import annotations

from pathlib import Path

import pytest

DIVERGED = (
    "diverged: training diverged: loss is nan at step 3 (epoch 0); lower optim.lr or set "
    "trainer.gradient_clip_val, or trainer.on_nonfinite_loss=skip to skip such steps"
)


def _study(folder: Path, outcomes: list[str]) -> object:
    """A journal study with one trial per outcome: a float is a COMPLETE value, a text a FAIL reason."""
    import optuna
    from optuna.trial import TrialState

    from normia.search.claim import REASON_ATTR
    from normia.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="s", storage=open_storage(str(folder / "study.journal")), direction="maximize"
    )
    for outcome in outcomes:
        trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(1.0, 10.0, log=True)})
        if isinstance(outcome, str):
            trial.set_user_attr(REASON_ATTR, outcome)
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, outcome)
    return study


def _plan(folder: Path, n_trials: int, parent_run_id: str, tracking_uri: str) -> object:
    from normia.search.plan import SearchPlan

    return SearchPlan(
        study_name="s",
        storage=str(folder / "study.journal"),
        search_dir=str(folder),
        n_trials=n_trials,
        trial_overrides=[],
        params={"optim.lr": {"type": "log-float", "low": 1.0, "high": 10.0}},
        monitor="val/acc",
        direction="maximize",
        parent_run_id=parent_run_id,
        tracking_uri=tracking_uri,
        max_failures=max(n_trials, 3),  # as prepare() sets it
    )


def _parent(tracking_uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    return str(client.create_run(client.create_experiment("search")).info.run_id)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_every_trial_failed_says_so_why_and_what_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from mlflow import MlflowClient

    from normia.search.claim import claim_next
    from normia.search.parent_run import open_parent_run
    from normia.search.report import finish

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = _study(
        tmp_path, [DIVERGED, "diverged: training diverged: loss is inf at step 1 (epoch 0)", DIVERGED]
    )
    plan = _plan(tmp_path, 1, _parent(tracking_uri), tracking_uri)
    capsys.readouterr()

    assert finish(study, plan, 0) == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "every trial failed (3 of 3)" in line
    assert f"the first, trial 0: {DIVERGED};" in line  # the first failure's own line
    assert "lower the learning rate" in line and "new study_name=NAME" in line and str(tmp_path) in line
    assert "continue it" not in line
    client = MlflowClient(tracking_uri=tracking_uri)
    assert client.get_run(plan.parent_run_id).info.status == "FAILED"

    # the same command again: its workers claim nothing, and the search says the same, not "continue it"
    assert claim_next(study, tmp_path, plan.n_trials, plan.max_failures) is None
    open_parent_run(tracking_uri, "search", "s", plan.parent_run_id, {})
    assert finish(study, plan, 0) == 1
    assert _error_lines(capsys.readouterr().err) == [line]
    assert client.get_run(plan.parent_run_id).info.status == "FAILED"


def test_failures_at_the_limit_after_some_finished_trials_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The same kind: some trials finished, then failures reached the limit: not 'continue it' either."""
    from normia.search.report import finish

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reasons = ["invalid config: optim.name='adamx' is not valid (did you mean 'adamw'?)"] * 3
    study = _study(tmp_path, [0.9, *reasons])
    plan = _plan(tmp_path, 3, _parent(tracking_uri), tracking_uri)
    capsys.readouterr()

    assert finish(study, plan, 0) == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "3 trials failed, the search's limit, with 1 of 3 finished" in line
    assert f"trial 1: {reasons[0]};" in line and "fix the values of the space file or the overrides" in line
    assert "continue it" not in line


def test_an_incomplete_search_below_the_limit_still_says_continue_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A search stopped (killed) with fewer failures than its limit: re-running continues it, as before."""
    from normia.search.report import finish

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = _study(tmp_path, [0.9, DIVERGED])
    plan = _plan(tmp_path, 4, _parent(tracking_uri), tracking_uri)
    capsys.readouterr()

    assert finish(study, plan, 0) == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "re-run the same command to continue it" in line
