"""What a Slurm task runs: one rank of one training job. submitit pickles a TrainJob, srun starts one process per
task, and each calls it. After a requeue the same pickle runs again and run_training resumes from last.ckpt."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from normia.launch import events, signals


class TrainJob:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __call__(self) -> float | None:
        signals.install()  # first thing: a preemption signal during start-up is remembered, not lost
        if os.environ.get("SLURM_PROCID", "0") == "0":
            events.record(self.cfg.paths.output_dir, "job_start", host=os.uname().nodename)
        try:
            from normia.launch.rendezvous import check_master_resolves
            from normia.training.run import run_training

            check_master_resolves()
            return run_training(self.cfg)
        finally:
            # The job is over (done, failed, or checkpointed for a requeue): a late signal must not kill the
            # process while it exits and turn the recorded outcome into FAILED. launcher=srun's next job installs
            # the handlers again.
            signals.ignore_until_exit()

    def __repr__(self) -> str:
        return f"TrainJob({self.cfg.get('name')}, output_dir={self.cfg.paths.output_dir})"
