"""What a Slurm task runs: one rank of one training job. submitit pickles a TrainJob, srun starts one process per
task, and each calls it. After a requeue the same pickle runs again and run_training resumes from last.ckpt.

A job of a project carries its JobPlace (normia.launch.place): the rank enters it (working folder, the project's code
on sys.path, its configs in NORMIA_CONFIG_PATH) before training imports the project's model."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from normia.launch import events, signals
from normia.launch.place import JobPlace


class TrainJob:
    """One rank of a training job; with `check_only` (`normia check-nodes`), the pre-flight check of the nodes alone
    (normia.launch.preflight_run): no data, no model, the table in <output_dir>/preflight.json and the job's log."""

    def __init__(self, cfg: DictConfig, place: JobPlace | None = None, check_only: bool = False):
        self.cfg = cfg
        self.place = place
        self.check_only = check_only

    def __call__(self) -> float | None:
        signals.install()  # first thing: a preemption signal during start-up is remembered, not lost
        try:
            place = getattr(self, "place", None)  # a job pickled before places existed has none
            if place is not None:
                place.enter()
            if os.environ.get("SLURM_PROCID", "0") == "0":
                project = {"project": place.label} if place is not None and place.label else {}
                events.record(
                    self.cfg.paths.output_dir,
                    "job_start",
                    host=os.uname().nodename,
                    node=os.environ.get("SLURMD_NODENAME"),
                    cwd=os.getcwd(),
                    **project,
                )
            from normia.launch.preflight_run import run_preflight
            from normia.launch.preflight_run import wanted as preflight_wanted
            from normia.launch.rendezvous import check_master_resolves
            from normia.training.run import run_training
            from normia.versions import check_supported_versions

            check_supported_versions()  # the node's environment (launcher.setup's modules) may differ from ours
            check_master_resolves()
            check_only = getattr(
                self, "check_only", False
            )  # a job pickled before check-nodes existed has none
            if check_only or preflight_wanted(self.cfg):  # before data and model: a bad node costs seconds
                code = run_preflight(self.cfg, self.cfg.paths.output_dir)
                if code is not None:
                    raise SystemExit(code)
            return None if check_only else run_training(self.cfg)
        finally:
            # The job is over (done, failed, or checkpointed for a requeue): a late signal must not kill the
            # process while it exits and turn the recorded outcome into FAILED. launcher=srun's next job installs
            # the handlers again.
            signals.ignore_until_exit()

    def __repr__(self) -> str:
        return f"TrainJob({self.cfg.get('name')}, output_dir={self.cfg.paths.output_dir})"
