"""`normia search experiment=X search=SPACE n_trials=N [workers=K] [launcher=slurm] [overrides]`.

Everything is checked before anything is written (the space file, its keys against the composed config, the
pruner and sampler, a resumed study's space and objective, the output folder, the MLflow store, the Slurm request):
bad input is one line and exit 2, with no study, no MLflow run, no folder and no job. Then the study is created or
resumed in <output_root>/search/<study>/, K workers run trials until N are COMPLETE or PRUNED, and the results are
printed, written (trials.csv, plots) and logged to the search's MLflow parent run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from normia.errors import UserError
from normia.search.args import split_args
from normia.search.prepare import Prepared, dry_run, prepare
from normia.search.storage import shown_storage

EPILOG = """examples:
  normia search experiment=quickstart search=quickstart n_trials=12 workers=2
  normia search experiment=quickstart search=quickstart n_trials=12 workers=2 pruner=asha sampler=random
  normia search experiment=quickstart search=quickstart n_trials=20 workers=4 launcher=slurm launcher.time=30
  normia search experiment=quickstart search=quickstart n_trials=12 storage=sqlite:///study.db
Re-running the same command continues the study (its trials are kept; n_trials may grow).
The space: configs/search/<name>.yaml (see src/normia/search/space.py); the objective: the config's monitor and
monitor_mode. Other arguments are overrides of every trial, as for normia train.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normia search",
        description="Hyperparameter search with Optuna: search=SPACE n_trials=N [workers=K] [storage=URL] "
        "[pruner=median|asha|none] [sampler=tpe|random] [study_name=NAME], then overrides for every trial.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help="your own config folder, layered over normia's (as for normia train)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and show what would run; write and run nothing",
    )
    parser.add_argument("args", nargs="*", help="search=SPACE n_trials=N ... and key=value overrides")
    return parser


def main(argv: list[str]) -> int:
    """`normia search`: validate everything, then create or resume the study, run the workers, report."""
    args = _parser().parse_intermixed_args(argv)
    from normia.training.cli import use_config_dir

    use_config_dir(args.config_dir)
    search = split_args(args.args)
    prepared = prepare(search, args.config_dir)
    if args.dry_run:
        return dry_run(prepared)
    return run(prepared)


def run(prepared: Prepared) -> int:
    """Write the study, the parent run and the plan, run the workers, then report. Returns the exit code."""
    import optuna

    from normia.private_paths import private_folder
    from normia.search.parent_run import ParentRun, ended_on_error
    from normia.search.prepare import FOLDER_FIX
    from normia.search.storage import open_storage

    plan = prepared.plan
    fresh_dir = not Path(plan.search_dir).exists()
    private_folder(Path(plan.search_dir), FOLDER_FIX)  # the plan names the code workers import: nobody else's
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=plan.study_name,
        storage=open_storage(plan.storage),
        direction=plan.direction,
        load_if_exists=True,
    )
    if not prepared.resumed:
        study.set_user_attr("search.space", json.dumps(plan.params, sort_keys=True))
        study.set_user_attr("search.monitor", plan.monitor)
        study.set_user_attr("search.space_name", prepared.space_name)
    parent: ParentRun | None = None
    if prepared.logger_on:
        parent = _open_parent(prepared)
        plan.parent_run_id = parent.run_id
    with ended_on_error(plan.tracking_uri, parent):  # a crash never leaves the parent RUNNING
        if parent is not None:
            study.set_user_attr("search.parent_run_id", parent.run_id)
        return _run_workers(prepared, study, fresh_dir)


def _open_parent(prepared: Prepared) -> Any:
    from normia.search.parent_run import open_parent_run

    plan = prepared.plan
    return open_parent_run(
        plan.tracking_uri,
        prepared.experiment_name,
        plan.study_name,
        plan.parent_run_id,
        {
            "search.study": plan.study_name,
            "search.space": prepared.space_name,
            "search.n_trials": str(plan.n_trials),
            "search.storage": shown_storage(plan.storage),
            "search.folder": plan.search_dir,
        },
    )


def _run_workers(prepared: Prepared, study: Any, fresh_dir: bool) -> int:
    """Write the plan, run the workers (local processes or a Slurm job array), then report."""
    from normia.search import local_workers
    from normia.search.report import finish

    plan, search = prepared.plan, prepared.search
    plan_path, sha256 = plan.write()
    verb = "resuming" if prepared.resumed else "starting"
    print(
        f"{verb} study '{plan.study_name}': {plan.n_trials} trials, {search.workers} worker(s), "
        f"{plan.monitor} ({plan.direction}), pruner {plan.pruner.get('name', 'median')}, "
        f"sampler {plan.sampler.get('name', 'tpe')}",
        flush=True,
    )
    print(f"  folder  {plan.search_dir}\n  storage {shown_storage(plan.storage)}", flush=True)
    if prepared.slurm is not None:
        try:
            code = _run_array(prepared, plan_path, sha256)
        except UserError:  # sbatch refused the array: a new search leaves nothing behind
            if not prepared.resumed:
                _undo_new_search(plan, fresh_dir)
            raise
    else:
        code = local_workers.run_local(plan, plan_path, search.workers, sha256)
    return finish(study, plan, code)


def _undo_new_search(plan: Any, fresh_dir: bool) -> None:
    """Remove what a new search wrote before its job array was refused: the study, the parent run, the folder."""
    import shutil

    import optuna

    from normia.search.storage import open_storage

    optuna.delete_study(study_name=plan.study_name, storage=open_storage(plan.storage))
    if plan.parent_run_id and plan.tracking_uri:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=plan.tracking_uri).delete_run(plan.parent_run_id)
    if fresh_dir:
        shutil.rmtree(plan.search_dir, ignore_errors=True)


def _run_array(prepared: Prepared, plan_path: Path, sha256: str) -> int:
    from normia.search.slurm_array import submit_array, wait_array

    spec, partition, place = prepared.slurm
    plan = prepared.plan
    jobs = submit_array(spec, partition, place, plan_path, prepared.search.workers, plan.study_name, sha256)
    array_id = str(jobs[0].job_id).split("_")[0]
    print(
        f"  submitted job array {array_id} ({len(jobs)} worker task(s)); logs in {plan_path.parent / 'slurm'}"
    )
    print(
        f"  follow: squeue -j {array_id}; cancel: scancel {array_id} (re-run this command to continue)",
        flush=True,
    )
    states = wait_array(jobs)
    bad = {job: state for job, (state, _) in states.items() if state != "COMPLETED"}
    for job, state in bad.items():
        print(f"  task {job}: {state}", file=sys.stderr)
    return 0
