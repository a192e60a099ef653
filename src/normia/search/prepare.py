"""Every check of a search, before anything is written: the space file and its keys against the composed default
trial, the arguments, the pruner and sampler, a resumed study's space and objective, the folder, the MLflow store
and the Slurm request. The result is the plan the workers read, or a one-line UserError; dry_run() shows it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from normia.errors import UserError
from normia.search.args import SearchArgs
from normia.search.storage import shown_storage

FOLDER_FIX = "give another study_name=NAME, or paths.output_root=DIR of yours"


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
    from normia.private_paths import check_private_folder

    check_private_folder(search_dir, FOLDER_FIX)  # its plan names the code the workers import
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
            _check_array_script(slurm, study_name, search_dir)
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


def _check_array_script(slurm: tuple[Any, str | None, Any], study_name: str, search_dir: Path) -> None:
    """Every value of the array's job script on one line (normia.launch.script_check); UserError otherwise."""
    from normia.launch.sbatch import executor_params, python_command
    from normia.launch.script_check import check_script

    spec, partition, place = slurm
    params = executor_params(spec, partition, f"normia-search-{study_name}", None, place)
    check_script(params, search_dir / "slurm" / "%j", python_command(spec))


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


def dry_run(prepared: Prepared) -> int:
    """What the search would do, from the checked plan; nothing is written or submitted."""
    plan, search = prepared.plan, prepared.search
    verb = "resume" if prepared.resumed else "start"
    print(f"would {verb} study '{plan.study_name}': {plan.n_trials} trials, {search.workers} worker(s)")
    print(f"  objective {plan.monitor} ({plan.direction}); pruner {plan.pruner}; sampler {plan.sampler}")
    print(f"  folder    {plan.search_dir}\n  storage   {shown_storage(plan.storage)}")
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
