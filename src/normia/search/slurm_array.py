"""`normia search ... launcher=slurm workers=K`: one Slurm job array of K tasks, each task a worker that pulls
trials from the shared study until it has N. The launcher's settings are read and checked by normia.launch
(partition, time limit, GPU Python, the project's place), as for `normia train launcher=slurm`; scripts and logs go
to <search folder>/slurm (mode 0700). Each task runs one process: a trial is one rank (launcher.nodes=1, one task)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from normia.errors import UserError


class SearchWorkerJob:
    """What each array task runs (pickled by submitit): enter the project's place, then work()."""

    def __init__(self, plan_path: str, place: Any = None, sha256: str | None = None):
        self.plan_path = plan_path
        self.place = place
        self.sha256 = sha256  # the plan's digest: a task refuses a plan changed after submission

    def __call__(self) -> int:
        if self.place is not None:
            self.place.enter()
        from normia.search.plan import read_plan
        from normia.search.worker import work

        index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
        return work(read_plan(self.plan_path, self.sha256), index)

    def __repr__(self) -> str:
        return f"SearchWorkerJob({self.plan_path})"


def check_array(cfg: DictConfig, workers: int) -> tuple[Any, str | None, Any]:
    """(launcher spec, partition, place), refused before anything is written: a worker is one process."""
    from normia.launch.checks import check_request
    from normia.launch.cluster_info import live_partitions
    from normia.launch.place import job_place
    from normia.launch.python_env import check_gpu_python
    from normia.launch.spec import parse_launcher

    if str(cfg.launcher.name) not in ("slurm", "austral"):
        raise UserError(
            f"launcher={cfg.launcher.name}: normia search runs workers locally or as a Slurm array (launcher=slurm|austral)"
        )
    spec = parse_launcher(cfg.launcher)
    if spec.nodes != 1 or spec.tasks != 1:
        raise UserError(
            f"launcher.nodes={spec.nodes} with {spec.tasks} task(s) per node: each search worker is one process "
            "(launcher.nodes=1, launcher.tasks_per_node=1, at most one GPU); use workers=K for parallel trials"
        )
    if spec.env:
        raise UserError(
            "launcher.env is not supported by normia search yet: export the variables before submitting"
        )
    partition = check_request(spec, live_partitions() if spec.query_cluster else None)
    check_gpu_python(spec)
    if shutil.which("sbatch") is None:
        raise UserError(
            "sbatch is not on PATH: run normia search with launcher=slurm on the cluster's login node"
        )
    return spec, partition, job_place(spec.sbatch_args.get("chdir"))


def submit_array(
    spec: Any,
    partition: str | None,
    place: Any,
    plan_path: Path,
    workers: int,
    name: str,
    sha256: str | None = None,
) -> list[Any]:
    """Submit K tasks as one array, each given the plan's sha256; returns submitit's jobs. UserError with Slurm's
    message when sbatch refuses, or when the job folder is not private."""
    import submitit

    from normia.launch.sbatch import executor_params, python_command
    from normia.launch.script_check import check_script
    from normia.launch.slurm import private_folder

    folder = plan_path.parent / "slurm"
    params = executor_params(spec, partition, f"normia-search-{name}", None, place)
    check_script(params, folder, python_command(spec))
    private_folder(folder)
    params["array_parallelism"] = max(int(params.get("array_parallelism") or 1), 1)
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=0, python=python_command(spec))
    executor.update_parameters(**params)
    umask = os.umask(0o077)
    try:
        with executor.batch():
            jobs = [executor.submit(SearchWorkerJob(str(plan_path), place, sha256)) for _ in range(workers)]
    except Exception as err:
        raise UserError(
            f"sbatch refused the search's job array: {' '.join(str(err).split())[:500]}"
        ) from None
    finally:
        os.umask(umask)
    return jobs


def wait_array(jobs: list[Any], poll_s: float = 2.0) -> dict[str, tuple[str, str]]:
    """Block until every task ended (sacct); {task id: (state, exit code)}."""
    from normia.launch.wait import wait_for

    time.sleep(poll_s)
    return wait_for([str(job.job_id) for job in jobs], poll_s=poll_s)
