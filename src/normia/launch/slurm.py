"""`normia train ... launcher=slurm|austral`: validate, then submit one job, or one job array for a sweep.

Called by normia.training.cli with the composed, validated jobs (each with its output_dir fixed). Everything that can
be refused is refused before sbatch runs; sbatch's own refusal is shown with Slurm's message. A sweep re-run skips
jobs whose done.json exists and submits the others, which resume from their last.ckpt. A project's job runs in the
project's folder with its code and configs (normia.launch.place); the dry run says where and what runs.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normia.config.masking import mask_text, mask_uri
from normia.config.names import check_name
from normia.errors import UserError
from normia.launch import events
from normia.launch.checks import check_request
from normia.launch.cluster_info import live_partitions
from normia.launch.place import JobPlace, job_place, pin_paths
from normia.launch.plan_notes import checkpoint_line, gpu_model, node_local_warnings
from normia.launch.python_env import check_gpu_python, describe_python
from normia.launch.sbatch import (
    ENV_FILE_PREFIX,
    executor_params,
    python_command,
    render_script,
    write_env_file,
)
from normia.launch.script_check import check_script
from normia.launch.spec import SlurmLauncherCfg, parse_launcher
from normia.launch.timelimit import format_seconds
from normia.launch.trainer_fit import fit_trainer_to_spec
from normia.training.preflight import check_float8_partition

DONE = "done.json"


def apply_launcher_to_trainer(cfg: DictConfig) -> DictConfig:
    """trainer.devices/num_nodes from cfg.launcher (tasks per node = GPUs per node, or launcher.tasks_per_node on
    CPU); UserError when the command line set them to something else."""
    fit_trainer_to_spec(cfg, parse_launcher(cfg.launcher))
    return cfg


def submit(jobs: list[DictConfig], argv_overrides: list[str], dry_run: bool, check_only: bool = False) -> int:
    """Submit `jobs` (training; with `check_only`, `normia check-nodes`: the nodes' pre-flight check alone)."""
    if not jobs:
        return 0
    if jobs[0].launcher.name == "srun":
        from normia.launch.srun import run_in_allocation

        return run_in_allocation(jobs, dry_run)
    for cfg in jobs:
        check_name(cfg.name)  # the job name goes into '#SBATCH --job-name=' and the output folder
    spec = parse_launcher(jobs[0].launcher)
    _check_same_launcher(jobs)
    place = job_place(spec.sbatch_args.get("chdir"))
    notes = []
    for cfg in jobs:
        notes.append(fit_trainer_to_spec(cfg, spec))  # printed once the request is accepted
        pin_paths(cfg, place)
    live = live_partitions() if spec.query_cluster else None
    partition = check_request(spec, live)
    for cfg in jobs:  # before check_gpu_python: a partition without float8 is the first thing to change
        check_float8_partition(cfg, spec, partition)
    check_gpu_python(spec)
    pending = []
    for cfg in jobs:
        if (Path(cfg.paths.output_dir) / DONE).is_file():
            print(f"already done, skipped: {cfg.paths.output_dir} (delete its {DONE} to run it again)")
        else:
            pending.append(cfg)
    data_sizes = {id(cfg): _data_per_rank(cfg, spec) for cfg in pending} if not check_only else {}
    # printed once nothing more can be refused (a refusal is one line): a precision normia chose, node-local paths
    advice = sorted({n for n in notes if n}) + [w for cfg in pending for w in node_local_warnings(cfg, spec)]
    folder = _log_folder(spec, jobs)
    env_file = folder / f"{ENV_FILE_PREFIX}{uuid.uuid4().hex[:12]}.sh" if spec.env else None
    params = executor_params(spec, partition, f"normia-{jobs[0].name}", env_file, place)
    check_script(params, folder, python_command(spec))  # a line break would be a shell command of the job
    array_size = len(pending) if len(pending) > 1 else None
    if dry_run:
        script = render_script(params, folder / "%j", python_command(spec), array_size)
        for line in advice:
            print(line)
        _print_plan(spec, partition, pending, len(jobs), data_sizes)
        _print_place(place, script)
        if env_file is not None:
            shown = " ".join(mask_text(f"{k}={v}") for k, v in spec.env.items())
            print(f"launcher.env: {shown} (written at submission to {env_file}, mode 0600)")
        print(mask_text(script))
        print(f"dry run: nothing submitted ({len(pending)} job(s) would be)")
        return 0
    if not pending:
        print(f"all {len(jobs)} job(s) already done; nothing to submit")
        return 0
    if shutil.which("sbatch") is None:
        raise UserError(
            "sbatch is not on PATH: run this on the cluster's login node (or add --dry-run to see the job)"
        )
    for cfg in pending:
        _preflight(cfg)
    submitted = _submit(spec, params, folder, pending, env_file, place, check_only)
    for line in advice:
        print(line)
    _print_submitted(spec, partition, submitted, pending)
    if spec.wait:
        return _wait_and_report(submitted)
    return 0


def _check_same_launcher(jobs: list[DictConfig]) -> None:
    first = OmegaConf.to_container(jobs[0].launcher, resolve=True)
    for cfg in jobs[1:]:
        if OmegaConf.to_container(cfg.launcher, resolve=True) != first:
            raise UserError(
                "the jobs of a sweep differ in launcher settings, but one job array has one set of resources; "
                "sweep over launcher.* with separate commands"
            )


def _log_folder(spec: SlurmLauncherCfg, jobs: list[DictConfig]) -> Path:
    if spec.folder:
        return Path(spec.folder).resolve()
    dirs = [str(Path(cfg.paths.output_dir).resolve()) for cfg in jobs]
    base = Path(dirs[0]) if len(dirs) == 1 else Path(os.path.commonpath(dirs))
    return base / "slurm"


def _preflight(cfg: DictConfig) -> None:
    from normia.training.outputs import check_writable

    check_writable(cfg.paths.output_dir)
    logger = cfg.get("logger")
    if logger is not None and logger.get("name") == "mlflow":
        from normia.tracking.uri import check_reachable

        check_reachable(str(logger.tracking_uri))


def private_folder(folder: Path) -> None:
    """The job folder, private: the job unpickles its config (which holds what it needs, secrets included) from
    there, so nobody else may have made it first or be able to write or read in it. Created with mode 0700 when
    missing; an existing one must be a real folder (not a link) owned by this user and writable by nobody else
    (normia.private_paths), and is made 0700. Raises UserError otherwise."""
    from normia.private_paths import private_folder as make_private

    make_private(folder, "set launcher.folder to a folder of yours")


def _submit(
    spec: SlurmLauncherCfg,
    params: dict[str, Any],
    folder: Path,
    pending: list[DictConfig],
    env_file: Path | None = None,
    place: JobPlace | None = None,
    check_only: bool = False,
) -> list[Any]:
    import submitit

    from normia.launch.job import TrainJob

    private_folder(folder)
    before = set(folder.iterdir())
    executor = submitit.SlurmExecutor(
        folder=folder / "%j", max_num_timeout=spec.max_requeues, python=python_command(spec)
    )
    executor.update_parameters(**params)
    submitted_at = time.time()
    umask = os.umask(0o077)  # submitit's pickles, scripts and job folders: readable by this user only
    try:
        if env_file is not None:
            write_env_file(env_file, spec)
        if len(pending) == 1:
            jobs = [executor.submit(TrainJob(pending[0], place, check_only))]
        else:
            with executor.batch():
                jobs = [executor.submit(TrainJob(cfg, place, check_only)) for cfg in pending]
    except Exception as err:  # sbatch refused: leave nothing behind, show Slurm's own words
        for path in set(folder.iterdir()) - before:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        raise UserError(f"sbatch refused the job: {mask_text(_slurm_message(err))}") from None
    finally:
        os.umask(umask)
    for job, cfg in zip(jobs, pending):
        events.record(cfg.paths.output_dir, "submitted", time=submitted_at, submitted_job_id=job.job_id)
    return jobs


def _slurm_message(err: Exception) -> str:
    text = str(err)
    lines = [
        line.strip() for line in text.splitlines() if "sbatch: error:" in line or "error:" in line.lower()
    ]
    message = (
        "; ".join(line.replace("sbatch: error: ", "") for line in lines) or text.strip().splitlines()[-1]
    )
    return " ".join(message.split())[:500]


def _data_per_rank(cfg: DictConfig, spec: SlurmLauncherCfg) -> str:
    """The data read here once and checked against the job's world size (refused in one line when a rank would get
    less than a batch or no validation sample): the job would fail at its start, after its wait in the queue."""
    from normia.training.data_per_rank import check_data_per_rank

    per_node = f"{spec.gpus_per_node} GPU(s)" if spec.gpus_per_node else f"{spec.tasks} task(s)"
    return check_data_per_rank(cfg, f"{spec.nodes} node(s) x {per_node}").describe()


def _resources(spec: SlurmLauncherCfg, partition: str | None) -> str:
    per_node = f"{spec.gpus_per_node} GPU(s)" if spec.gpus_per_node else f"{spec.tasks} task(s)"
    gpu = gpu_model(spec, partition) if spec.gpus_per_node else None
    where = f"partition {partition or '(default)'}" + (f", GPU {gpu}" if gpu else "")
    return (
        f"{spec.nodes} node(s) x {per_node}, {spec.nodes * spec.tasks} rank(s), {where}, "
        f"time {format_seconds(spec.time_s)}, signal {spec.signal} {spec.signal_delay_s}s before the end"
    )


def _print_plan(
    spec: SlurmLauncherCfg,
    partition: str | None,
    pending: list[DictConfig],
    total: int,
    data_sizes: dict[int, str],
) -> None:
    print(f"resources: {_resources(spec, partition)}")
    print(describe_python(spec))
    mode = str(spec.preflight).lower()
    checked = mode == "true" or (mode == "auto" and spec.nodes > 1)
    print(
        "pre-flight: "
        + ("devices and network checked before training (launcher.preflight=" + mode + ")" if checked
           else "off (launcher.preflight=" + mode + "; auto checks jobs of 2+ nodes)")
        + ("; a failing or hanging node is excluded and the job requeued" if spec.exclude_failed_nodes else "")
    )  # fmt: skip
    if spec.nodes > 1:
        where = (
            spec.master_addr
            or "the job's first node (set launcher.master_addr where node names do not resolve)"
        )
        print(f"master address: {where}")
    if total > 1:
        print(f"job array: {len(pending)} of {total} job(s), at most {spec.array_parallelism} at a time")
    for cfg in pending:
        print(f"  {_shown(cfg)} -> {cfg.paths.output_dir}")
        print(f"    each rank: {_rank_runs(cfg)}")
        if id(cfg) in data_sizes:
            print(f"    data: {data_sizes[id(cfg)]}")
        print(f"    {checkpoint_line(cfg, spec)}")
        print(f"    mlflow: {_mlflow_where(cfg)}")


def _print_place(place: JobPlace | None, script: str) -> None:
    """Where the ranks start, how they find the project, and the command each one runs (the script's srun line)."""
    if place is None:
        print(f"working folder: {Path.cwd()} (sbatch's default: the folder normia train runs in)")
    else:
        for line in place.describe():
            print(line)
    command = next((line for line in script.splitlines() if line.startswith("srun ")), "")
    print(f"command (each rank, in the working folder): {mask_text(command)}")
    print(
        "  it runs the job composed and checked here (normia train with the overrides above), pickled in its folder"
    )


def _shown(cfg: DictConfig) -> str:
    """The job's overrides as typed, secrets masked (`+launcher.env.HF_TOKEN=***`)."""
    return mask_text(" ".join(str(o) for o in cfg.overrides)) or "(defaults)"


def _rank_runs(cfg: DictConfig) -> str:
    """What Lightning will run on in each rank, as fitted to the launcher (the script alone does not say)."""
    trainer = cfg.trainer
    return (
        f"accelerator={trainer.get('accelerator')}, devices={trainer.get('devices')} per node x "
        f"{trainer.get('num_nodes')} node(s), strategy={trainer.get('strategy')}, precision={trainer.get('precision')}"
    )


def _mlflow_where(cfg: DictConfig) -> str:
    logger = cfg.get("logger")
    if logger is None or logger.get("name") != "mlflow":
        return "off (logger=none)"
    return f"{mask_uri(str(logger.tracking_uri))}, experiment '{logger.experiment_name}' (see `mlflow ui --backend-store-uri ...`)"


def _print_submitted(
    spec: SlurmLauncherCfg, partition: str | None, jobs: list[Any], cfgs: list[DictConfig]
) -> None:
    if len(jobs) == 1:
        print(f"submitted job {jobs[0].job_id}: {_resources(spec, partition)}")
    else:
        array_id = str(jobs[0].job_id).split("_")[0]
        print(
            f"submitted job array {array_id} ({len(jobs)} jobs, at most {spec.array_parallelism} at a time): "
            f"{_resources(spec, partition)}"
        )
    for job, cfg in zip(jobs, cfgs):
        print(f"  job {job.job_id}: {_shown(cfg)}")
        print(f"    output: {cfg.paths.output_dir}")
        print(f"    each rank: {_rank_runs(cfg)}")
        print(f"    {checkpoint_line(cfg, spec)}")
        print(f"    logs:   {job.paths.stdout} (rank 0; other ranks: {job.paths.folder}/*_log.*)")
    print(f"  mlflow: {_mlflow_where(cfgs[0])}")
    ids = ",".join(str(job.job_id) for job in jobs)
    print(f"  follow: squeue -j {ids.split('_')[0] if len(jobs) > 1 else ids}; cancel: scancel <job id>")


def _wait_and_report(jobs: list[Any]) -> int:
    from normia.launch.wait import error_excerpt, wait_for

    ids = [str(job.job_id) for job in jobs]
    states = wait_for(ids)
    failed = 0
    for job in jobs:
        state, code = states.get(str(job.job_id), ("UNKNOWN", ""))
        print(f"job {job.job_id}: {state} (exit {code})")
        if state != "COMPLETED":
            failed += 1
            excerpt = error_excerpt(Path(job.paths.folder), str(job.job_id))
            if excerpt:
                print(mask_text(excerpt))
    return 1 if failed else 0
