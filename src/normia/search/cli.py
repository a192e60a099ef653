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
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normia.errors import UserError

EPILOG = """examples:
  normia search experiment=quickstart search=quickstart n_trials=12 workers=2
  normia search experiment=quickstart search=quickstart n_trials=12 workers=2 pruner=asha sampler=random
  normia search experiment=quickstart search=quickstart n_trials=20 workers=4 launcher=slurm launcher.time=30
  normia search experiment=quickstart search=quickstart n_trials=12 storage=sqlite:///study.db
Re-running the same command continues the study (its trials are kept; n_trials may grow).
The space: configs/search/<name>.yaml (see src/normia/search/space.py); the objective: the config's monitor and
monitor_mode. Other arguments are overrides of every trial, as for normia train.
"""

SEARCH_KEYS = ("search", "n_trials", "workers", "storage", "pruner", "sampler", "study_name")


@dataclass
class SearchArgs:
    """The search's own arguments; `overrides`: everything else, for every trial."""

    space: str
    n_trials: int
    workers: int = 1
    storage: str | None = None
    pruner: str | None = None
    sampler: str | None = None
    study_name: str | None = None
    overrides: list[str] = field(default_factory=list)


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


def split_args(texts: list[str]) -> SearchArgs:
    """Take the search's own key=value arguments out; UserError for a missing or malformed one."""
    own: dict[str, str] = {}
    overrides = []
    for text in texts:
        key, eq, value = text.partition("=")
        if eq and key in SEARCH_KEYS:
            if key in own:
                raise UserError(f"{key} is given twice ({key}={own[key]} and {text}); keep one")
            own[key] = value
        elif eq and key.lstrip("+~") in SEARCH_KEYS:
            raise UserError(f"'{text}' is an argument of normia search: write it without '{key[0]}'")
        elif text.startswith("-"):
            raise UserError(f"unknown option {text}; see normia search --help")
        else:
            overrides.append(text)
    if "search" not in own:
        raise UserError(
            "normia search needs search=SPACE, a file of configs/search/ (e.g. search=quickstart)"
        )
    if "n_trials" not in own:
        raise UserError("normia search needs n_trials=N, the number of trials to finish (e.g. n_trials=12)")
    return SearchArgs(
        space=own["search"],
        n_trials=_positive(own["n_trials"], "n_trials"),
        workers=_positive(own.get("workers", "1"), "workers"),
        storage=own.get("storage") or None,
        pruner=own.get("pruner") or None,
        sampler=own.get("sampler") or None,
        study_name=own.get("study_name") or None,
        overrides=overrides,
    )


def _positive(text: str, key: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{key}={text}: give a whole number of 1 or more")
    return value


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


def dry_run(prepared: Prepared) -> int:
    """What the search would do, from the checked plan; nothing is written or submitted."""
    plan, search = prepared.plan, prepared.search
    verb = "resume" if prepared.resumed else "start"
    print(f"would {verb} study '{plan.study_name}': {plan.n_trials} trials, {search.workers} worker(s)")
    print(f"  objective {plan.monitor} ({plan.direction}); pruner {plan.pruner}; sampler {plan.sampler}")
    print(f"  folder    {plan.search_dir}\n  storage   {_shown_storage(plan.storage)}")
    for key, spec in plan.params.items():
        from normia.search.space import parse_param

        print(f"  search    {key}: {parse_param(key, spec, '').describe()}")
    from normia.config.masking import mask_text

    print(f"  each trial: {mask_text(' '.join(plan.trial_overrides)) or '(defaults)'} + the sampled values")
    if prepared.slurm is not None:
        from normia.launch.sbatch import executor_params, python_command, render_script

        spec, partition, place = prepared.slurm
        params = executor_params(spec, partition, f"normia-search-{plan.study_name}", None, place)
        folder = Path(plan.search_dir) / "slurm" / "%j"
        print(mask_text(render_script(params, folder, python_command(spec), search.workers)))
    else:
        print(f"  workers: {search.workers} local process(es)")
    print("dry run: nothing written, nothing run")
    return 0


@dataclass
class Prepared:
    """A checked search, ready to write: its plan, and how its workers run."""

    plan: Any
    search: SearchArgs
    space_name: str
    experiment_name: str
    logger_on: bool
    resumed: bool
    slurm: tuple[Any, str | None, Any] | None


def prepare(search: SearchArgs, config_dir: str | None) -> Prepared:
    """Every check, and nothing written. Raises UserError (one line) for anything wrong."""
    from normia.config.compose import compose_job
    from normia.config.names import check_name
    from normia.config.overrides import parse_override, parse_overrides
    from normia.search.engine import make_pruner, make_sampler
    from normia.search.plan import SearchPlan
    from normia.search.space import check_keys, load_space
    from normia.search.storage import existing_study, storage_location
    from normia.training.outputs import check_writable

    space = load_space(search.space)
    parse_overrides(search.overrides)
    for text in search.overrides:
        if parse_override(text).is_sweep_override():
            raise UserError(
                f"'{text}' lists several values: a search samples values; put the key in the space file"
            )
    launcher = [o for o in search.overrides if o.lstrip("+~").partition("=")[0].split(".")[0] == "launcher"]
    typed = {o.lstrip("+~").partition("=")[0] for o in search.overrides}
    from_file = [
        o for o in space.overrides if o.lstrip("+~").partition("=")[0] not in typed
    ]  # the command wins
    trial_overrides = [*from_file, *(o for o in search.overrides if o not in launcher)]
    cfg = compose_job(trial_overrides)  # the default trial: validated as normia train would
    check_keys(space, cfg, trial_overrides)
    if int(cfg.trainer.devices) * int(cfg.trainer.num_nodes) > 1:
        raise UserError("a search trial runs in one process: set trainer.devices=1 (run K workers instead)")
    if not cfg.get("monitor"):
        raise UserError(
            "the config has no monitor: set monitor=<metric> (e.g. monitor=val/acc monitor_mode=max)"
        )
    pruner = {**space.pruner, **({"name": search.pruner} if search.pruner else {})}
    sampler = {**space.sampler, **({"name": search.sampler} if search.sampler else {})}
    if search.pruner and search.pruner != space.pruner.get("name"):
        pruner = {"name": search.pruner}  # the file's arguments belong to the file's pruner
    if search.sampler and search.sampler != space.sampler.get("name"):
        sampler = {"name": search.sampler}
    make_pruner(pruner)
    make_sampler(sampler, 0)
    study_name = check_name(search.study_name or f"{cfg.name}-{space.name}", "study_name")
    search_dir = (Path(str(cfg.paths.output_root)) / "search" / study_name).absolute()
    check_writable(str(search_dir))
    storage = storage_location(search.storage, search_dir)
    direction = "maximize" if str(cfg.monitor_mode) == "max" else "minimize"
    stored = existing_study(storage, study_name)
    if stored is not None:
        _check_resume(stored, space, str(cfg.monitor), direction)
    logger_on = cfg.logger.name == "mlflow"
    tracking_uri = None
    if logger_on:
        from normia.tracking.uri import check_reachable, resolve_tracking_uri

        tracking_uri = resolve_tracking_uri(cfg.logger.tracking_uri)
        check_reachable(tracking_uri)
    slurm = None
    if launcher:
        from normia.search.slurm_array import check_array

        slurm_cfg = compose_job([*trial_overrides, *launcher])
        if str(slurm_cfg.launcher.name) != "local":
            slurm = check_array(slurm_cfg, search.workers)
    plan = SearchPlan(
        study_name=study_name,
        storage=storage,
        search_dir=str(search_dir),
        n_trials=search.n_trials,
        trial_overrides=trial_overrides,
        params=space.as_dict(),
        monitor=str(cfg.monitor),
        direction=direction,
        pruner=pruner,
        sampler=sampler,
        seed=int(cfg.seed),
        parent_run_id=stored.user_attrs.get("search.parent_run_id") if stored is not None else None,
        tracking_uri=tracking_uri,
        config_dir=str(Path(config_dir).absolute()) if config_dir else None,
        max_failures=max(search.n_trials, 3),
    )
    return Prepared(
        plan, search, space.name, str(cfg.logger.experiment_name), logger_on, stored is not None, slurm
    )


def _check_resume(stored: Any, space: Any, monitor: str, direction: str) -> None:
    """A resumed study must search the same space for the same objective; UserError listing the differences."""
    from normia.search.space import space_differences

    attrs = stored.user_attrs
    old_space = json.loads(attrs.get("search.space", "{}"))
    changes = space_differences(old_space, space.as_dict())
    if attrs.get("search.monitor") not in (None, monitor) or stored.direction.name.lower() != direction:
        changes.append(
            f"objective: {attrs.get('search.monitor')} {stored.direction.name.lower()} -> {monitor} {direction}"
        )
    if changes:
        raise UserError(
            f"study '{stored.study_name}' was run with another search space: {'; '.join(changes)}; "
            "give a new study_name=NAME (or delete its folder) to search this space"
        )


def run(prepared: Prepared) -> int:
    """Write the study, the parent run and the plan, run the workers, then report. Returns the exit code."""
    import optuna

    from normia.search.storage import open_storage

    plan, search = prepared.plan, prepared.search
    fresh_dir = not Path(plan.search_dir).exists()
    Path(plan.search_dir).mkdir(parents=True, exist_ok=True)
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
    if prepared.logger_on:
        from normia.search.parent_run import open_parent_run

        plan.parent_run_id = open_parent_run(
            plan.tracking_uri,
            prepared.experiment_name,
            plan.study_name,
            plan.parent_run_id,
            {
                "search.study": plan.study_name,
                "search.space": prepared.space_name,
                "search.n_trials": str(plan.n_trials),
                "search.storage": _shown_storage(plan.storage),
                "search.folder": plan.search_dir,
            },
        )
        study.set_user_attr("search.parent_run_id", plan.parent_run_id)
    plan_path = plan.write()
    verb = "resuming" if prepared.resumed else "starting"
    print(
        f"{verb} study '{plan.study_name}': {plan.n_trials} trials, {search.workers} worker(s), "
        f"{plan.monitor} ({plan.direction}), pruner {plan.pruner.get('name', 'median')}, "
        f"sampler {plan.sampler.get('name', 'tpe')}",
        flush=True,
    )
    print(f"  folder  {plan.search_dir}\n  storage {_shown_storage(plan.storage)}", flush=True)
    if prepared.slurm is not None:
        try:
            code = _run_array(prepared, plan_path)
        except UserError:  # sbatch refused the array: a new search leaves nothing behind
            if not prepared.resumed:
                _undo_new_search(plan, fresh_dir)
            raise
    else:
        code = _run_local(plan, plan_path, search.workers)
    return _finish(study, plan, code)


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


def _shown_storage(storage: str) -> str:
    from normia.config.masking import mask_uri

    return mask_uri(storage)


def _run_local(plan: Any, plan_path: Path, workers: int) -> int:
    """K worker processes (logs in worker-<i>.log), following the study until they all exit; 130 on Ctrl-C."""
    procs = []
    for index in range(workers):
        log = open(Path(plan.search_dir) / f"worker-{index}.log", "a")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [sys.executable, "-m", "normia.search.worker", str(plan_path), "--index", str(index)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_worker_env(workers),
        )
        procs.append((proc, log))
        print(f"  worker {index}: pid {proc.pid}, log {log.name}", flush=True)
    try:
        _follow(plan, lambda: all(p.poll() is not None for p, _ in procs))
    except KeyboardInterrupt:
        for proc, _ in procs:
            try:
                proc.wait(
                    timeout=60
                )  # the workers got the Ctrl-C too: they stop their trial and queue it again
            except subprocess.TimeoutExpired:
                proc.kill()
        return 130
    finally:
        for _, log in procs:
            log.close()
    codes = [p.returncode for p, _ in procs]
    for index, code in enumerate(codes):
        if code != 0:
            print(f"  worker {index} exited with code {code} (see worker-{index}.log)", file=sys.stderr)
    return 0


def _worker_env(workers: int) -> dict[str, str]:
    """The workers' environment: without OMP_NUM_THREADS set by the user, each gets its share of the cores (K
    processes with all cores' threads each oversubscribe the CPU: measured 45x slower on 2 cores)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


def _run_array(prepared: Prepared, plan_path: Path) -> int:
    from normia.search.slurm_array import submit_array, wait_array

    spec, partition, place = prepared.slurm
    plan = prepared.plan
    jobs = submit_array(spec, partition, place, plan_path, prepared.search.workers, plan.study_name)
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


def _follow(plan: Any, done: Any, poll_s: float = 2.0) -> None:
    """Print each trial as it ends, until done() is true."""
    import optuna

    study = optuna.load_study(study_name=plan.study_name, storage=_storage(plan))
    seen: set[int] = set()
    while True:
        finished = done()
        for t in study.get_trials(deepcopy=False):
            if t.number in seen or t.state.name in ("RUNNING", "WAITING"):
                continue
            seen.add(t.number)
            value = f" {plan.monitor}={t.value:.4f}" if t.value is not None else ""
            print(f"  trial {t.number}: {t.state.name}{value}", flush=True)
        if finished:
            return
        time.sleep(poll_s)


def _storage(plan: Any) -> Any:
    from normia.search.storage import open_storage

    return open_storage(plan.storage)


def _finish(study: Any, plan: Any, code: int) -> int:
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
        print(f"  mlflow: parent run {plan.parent_run_id} in {_shown_storage(plan.tracking_uri)}")
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
