"""`normia train` and `normia eval`: parse, expand a sweep, compose and validate every job, then run them locally
or hand them to the Slurm launcher. Every job is validated before the first one starts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from normia.config.secrets import redact
from normia.errors import Stopped, UserError, stop_exit_code

TRAIN_EPILOG = """examples:
  normia train experiment=quickstart
  normia train experiment=quickstart trainer=ddp trainer.accelerator=cpu trainer.devices=2
  normia train experiment=quickstart resume=true
  normia train -m experiment=quickstart optim.lr=1e-3,3e-3
  normia train experiment=quickstart launcher=slurm --dry-run
groups: ls the folders of configs/ (model, data, optim, trainer, logger, callbacks, paths, launcher, experiment, debug, energy)
"""


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normia train",
        description="Train from Hydra configs. Overrides: group=option or key=value.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-m", "--multirun", action="store_true", help="sweep: a=1,2 b=x,y runs every combination"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and show what would run; run nothing"
    )
    parser.add_argument(
        "--cfg",
        action="store_true",
        help="print the composed config of each job, and which config tree each option came from, and exit",
    )
    add_config_dir_argument(parser)
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. experiment=quickstart optim.lr=3e-4"
    )
    return parser


def add_config_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help="your own config folder (groups like experiment/, model/), layered over normia's; default: the "
        "configs/ of the project around the current folder, or $NORMIA_CONFIG_PATH",
    )


def use_config_dir(config_dir: str | None) -> None:
    """`--config-dir DIR`, else the project around the current folder: its options join normia's and its code is
    importable, in this process and every process it starts (eval and reproduce import a run's targets too)."""
    from normia.project import activate, current_project, project_from_config_dir

    activate(project_from_config_dir([config_dir]) if config_dir is not None else current_project())


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Hydra's basic sweeper semantics: every comma list / range() / choice() multiplies the jobs, the last
    argument varying fastest. Each job keeps the text of its values as typed. Raises UserError for an override
    that does not parse, a key given twice, or a sweep with no value."""
    from normia.config.overrides import expand, parse_overrides

    return expand(parse_overrides(overrides))


def compose_jobs(overrides: list[str], multirun: bool) -> tuple[list[DictConfig], str | None]:
    """Compose and validate every job; a sweep job's folder follows from its own overrides (not from its place
    in the sweep), so the same sweep typed in another order finds the same folders."""
    from normia.config.compose import compose_job
    from normia.config.overrides import job_folder_name, parse_overrides, sweep_identity
    from normia.training.outputs import assign_output_dir, check_same_job, sweep_id

    parsed = parse_overrides(overrides)
    job_overrides = expand_sweep(overrides) if multirun else [overrides]
    sweep = sweep_id(sweep_identity(parsed)) if multirun else None
    swept = {o.key for o in parsed if o.is_sweep}
    jobs = []
    for job in job_overrides:
        cfg = compose_job(job)
        assign_output_dir(cfg, sweep, job_folder_name(job, swept) if multirun else None)
        if multirun:
            check_same_job(cfg)
        jobs.append(cfg)
    _refuse_shared_folders(jobs)
    return jobs, sweep


def _refuse_shared_folders(jobs: list[DictConfig]) -> None:
    """Two jobs of a sweep in one folder would resume and report each other's run (paths.output_dir fixed)."""
    seen: dict[str, DictConfig] = {}
    for cfg in jobs:
        folder = str(cfg.paths.output_dir)
        if folder in seen:
            raise UserError(
                f"two jobs of the sweep would write to {folder} ({_shown(seen[folder])} and {_shown(cfg)}): "
                "drop paths.output_dir (each job gets its own folder) or set paths.output_root"
            )
        seen[folder] = cfg


def main(argv: list[str]) -> int:
    """`normia train`: flags (-m, --dry-run, --cfg) may stand anywhere among the overrides."""
    args = _train_parser().parse_intermixed_args(argv)
    use_config_dir(args.config_dir)
    if not args.multirun and any(_is_sweep(o) for o in args.overrides):
        raise UserError(
            f"'{next(o for o in args.overrides if _is_sweep(o))}' lists several values: add -m to sweep"
        )
    jobs, sweep = compose_jobs(args.overrides, args.multirun)
    if args.cfg:
        _print_configs(jobs)
        return 0
    launcher = str(jobs[0].launcher.name)
    dry_run = args.dry_run or bool(jobs[0].launcher.get("dry_run", False))
    if launcher != "local":
        return _submit(jobs, args.overrides, dry_run)
    if dry_run:
        for i, cfg in enumerate(jobs):
            print(f"job {i}: {_shown(cfg)} -> {cfg.paths.output_dir}")
        print(f"dry run: {len(jobs)} job(s) validated, nothing run")
        return 0
    return _run_local(jobs, sweep)


def _print_configs(jobs: list[DictConfig]) -> None:
    """Each job's composed config (secrets masked), headed by the file each group option came from when a
    project's config folders are layered over normia's."""
    from normia.config.compose import option_choices, recorded_overrides
    from normia.config.origins import origin_lines
    from normia.project import current_project

    project = current_project()
    for cfg in jobs:
        if project is not None:
            print(f"# project: {project.describe()}")
            print("\n".join(origin_lines(option_choices(recorded_overrides(cfg)))))
        print(OmegaConf.to_yaml(redact(cfg)))


def _shown(cfg: DictConfig) -> str:
    """The job's overrides as typed (secrets masked), for the terminal."""
    from normia.config.secrets import redact_override

    return " ".join(redact_override(str(o)) for o in cfg.overrides) or "(defaults)"


def _is_sweep(override: str) -> bool:
    from normia.config.overrides import parse_override

    return bool(parse_override(override).is_sweep_override())


def _submit(jobs: list[DictConfig], overrides: list[str], dry_run: bool) -> int:
    from normia.tracking.tags import check_user_tags

    for cfg in jobs:  # a tag MLflow refuses would fail on the node after the queue wait: refuse it here
        check_user_tags(cfg.tags)
    try:
        from normia.launch.slurm import submit
    except ImportError as err:
        raise UserError(
            f"launcher={jobs[0].launcher.name} is not available in this install ({err})"
        ) from None
    return int(submit(jobs, overrides, dry_run) or 0)


def _run_local(jobs: list[DictConfig], sweep: str | None) -> int:
    from normia.training.outputs import check_same_job
    from normia.training.preflight import preflight_local

    for cfg in jobs:
        preflight_local(cfg)
    results = []
    for index, cfg in enumerate(jobs):
        done = Path(cfg.paths.output_dir) / "done.json"
        if sweep is not None:
            check_same_job(cfg)  # again: an earlier job of this command may have written there since
        if sweep is not None and done.is_file():
            result = json.loads(done.read_text()).get("result")
            print(
                f"job {index} already done ({cfg.paths.output_dir}): result {result}; delete the folder to re-run"
            )
            results.append(result)
            continue
        if sweep is not None:
            print(f"== job {index + 1}/{len(jobs)}: {_shown(cfg)}", flush=True)
        code = _run_sweep_job(cfg) if sweep is not None else run_job(cfg)
        if code == DIVERGED and sweep is not None:  # one diverged setting must not end the others
            results.append("diverged")
            continue
        if code != 0:
            return code
        results.append(json.loads(done.read_text()).get("result") if done.is_file() else None)
    if sweep is not None:
        _print_sweep(jobs, results)
        if "diverged" in results:
            return DIVERGED
    return 0


DIVERGED = 3  # TrainingDiverged.exit_code: the command's code when a job's loss became nan/inf


def _run_sweep_job(cfg: DictConfig) -> int:
    """run_job, with a diverged job reported as one line and its exit code, so the sweep goes on."""
    from normia.training.health import TrainingDiverged

    try:
        return run_job(cfg)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return DIVERGED


def run_job(cfg: DictConfig) -> int:
    """Run one composed job on this machine (in this process, or as local ranks); 0, 130 when stopped, or the
    failing rank's code. Used by `normia train` and `normia reproduce`."""
    from normia.config.compose import recorded_overrides, set_overrides
    from normia.config.overrides import as_override

    set_overrides(cfg, recorded_overrides(cfg))  # a caller may have assigned them as plain text (reproduce)
    world = int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)
    try:
        if world > 1:
            from normia.training.data_per_rank import check_data_per_rank
            from normia.training.spawn import run_local_processes

            if int(cfg.trainer.num_nodes) > 1:
                raise UserError("trainer.num_nodes > 1 needs a cluster: use launcher=slurm (or austral)")
            check_data_per_rank(
                cfg, f"trainer.devices={world}"
            )  # once here, not by every rank after it started
            code = run_local_processes(cfg, world)
            if code in (130, 143):
                raise Stopped(code)
            return code
        from normia.config.compose import resolve_job
        from normia.training.run import run_training

        resolve_job(cfg)
        run_training(cfg)
        return 0
    except KeyboardInterrupt as err:
        print(
            f"stopped; checkpoint in {cfg.paths.output_dir}/checkpoints. Resume with the same command plus "
            f"{as_override('resume', str(cfg.paths.output_dir))}",
            file=sys.stderr,
        )
        return stop_exit_code(err)


def _print_sweep(jobs: list[DictConfig], results: list[float | None]) -> None:
    print(f"== sweep of {len(jobs)} job(s), monitor {jobs[0].monitor} ({jobs[0].monitor_mode})")
    for cfg, result in zip(jobs, results):
        shown = (
            f"{result:.4f}" if isinstance(result, float) else (result if isinstance(result, str) else "n/a")
        )
        print(f"  {shown:>10}  {_shown(cfg)}")


def eval_main(argv: list[str]) -> int:
    """Validate a checkpoint with the config of the run that wrote it: normia eval ckpt=PATH [key=value ...]."""
    parser = argparse.ArgumentParser(
        prog="normia eval", description="Evaluate a checkpoint on its validation data."
    )
    parser.add_argument(
        "args", nargs="+", help="ckpt=PATH, then optional overrides of the run's saved config"
    )
    add_config_dir_argument(parser)
    parser.add_argument(
        "--trust",
        action="store_true",
        help="run the saved config even if it names code outside the allowed targets or calls resolvers "
        "(only for a run folder you or someone you trust wrote)",
    )
    args = parser.parse_args(argv)
    use_config_dir(args.config_dir)
    ckpt, overrides = _eval_args(args.args)
    from normia.training.evaluate import evaluate

    metrics = evaluate(Path(ckpt), overrides, trust=args.trust)
    for key, value in sorted(metrics.items()):
        print(f"{key:<24} {value:.4f}")
    return 0


def _eval_args(texts: list[str]) -> tuple[str, list[str]]:
    """(checkpoint path, other overrides), read with the grammar of `normia train`: `ckpt='a/epoch=0-step=22.ckpt'`
    gives the path without its quotes, as `resume=...` does. Raises UserError without ckpt=."""
    from normia.config.overrides import parse_override, parse_overrides

    parse_overrides(texts)
    ckpt = next((parse_override(t).value() for t in texts if t.partition("=")[0] == "ckpt"), None)
    if not ckpt or not isinstance(ckpt, str):
        raise UserError("normia eval needs ckpt=PATH (a .ckpt file written by normia train)")
    return ckpt, [t for t in texts if t.partition("=")[0] != "ckpt"]
