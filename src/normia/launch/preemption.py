"""SlurmPreemption: the one layer that owns requeue for normia jobs on Slurm.

On the signal Slurm sends before a time limit (--signal=USR1@s; USR2 from submitit's tools) or on SIGTERM
(preemption, scancel), the handler only sets a flag (normia.launch.signals). At the next optimizer-step boundary
all ranks agree through one all_reduce, save ONE checkpoint together (output_dir/checkpoints/step-N.ckpt, made
visible only once complete, and last.ckpt pointed at it), then rank 0 requeues the job with `scontrol requeue` (USR1/USR2 only, at
most max_requeues times) and every rank exits. The requeued job starts the same command, and run_training resumes
from last.ckpt: same step, optimizer, LR schedule, RNG, data position and MLflow run. Lightning's own auto-requeue
is off (SLURMEnvironment(auto_requeue=False)) and submitit's handler is replaced, so nothing else requeues.

A fault of the machine requeues the job too when `exclude_failed_nodes` is on (normia.launch.node_failure): a hang the
watchdog pins on some ranks or a GPU error, with that node excluded; an NCCL network error, as it is. An error of the
code is not requeued.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L

from normia.launch import events, signals
from normia.launch.slurm_commands import scontrol
from normia.training.callbacks import flush_step_metrics, max_over_ranks


class SlurmPreemption(L.Callback):
    def __init__(
        self,
        check_every_n_steps: int = 1,
        requeue: bool = True,
        max_requeues: int = 10,
        exclude_failed_nodes: bool = True,
    ):
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self.requeue = requeue
        self.max_requeues = max_requeues
        self.exclude_failed_nodes = exclude_failed_nodes
        self._root = Path(".")
        self._last_step = -1
        self._first_step_seen = False

    # Lightning registers its own SIGTERM/SIGUSR handlers between setup and the first batch; take them back at every
    # point where that may have happened. Only flags are set, whoever installed last.
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        signals.install()
        self._root = Path(trainer.default_root_dir)
        if self.requeue and self.exclude_failed_nodes:
            from normia.training.watchdog import HangWatchdog

            for callback in trainer.callbacks:
                if isinstance(callback, HangWatchdog):
                    callback.on_hang = self._requeue_away

    def _requeue_away(self, nodes: list[str], reason: str) -> str | None:
        """The watchdog pinned a hang on `nodes`: requeue the job without them (None when it was not)."""
        from normia.launch.node_failure import requeue_after_fault

        return requeue_after_fault(nodes, reason, self._root, self.max_requeues)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A GPU error on this rank is its node's fault: requeue away from the node. An NCCL network error names no
        node (healthy peers report it too): requeue as it is, the next attempt's pre-flight check looks for it.
        Errors of the code are left to fail the job. Also before `setup` (NCCL's first collective runs earlier),
        hence the run folder from the trainer."""
        if not (self.requeue and self.exclude_failed_nodes):
            return
        from normia.launch.node_failure import hardware_fault, requeue_after_fault
        from normia.node import node_name

        fault = hardware_fault(exception)
        if fault is None:
            return
        node = node_name()
        where = f"rank {trainer.global_rank} on {node}"
        blamed = [node] if fault.kind == "device" else []
        said = requeue_after_fault(
            blamed, f"{where}: {fault.line}", Path(trainer.default_root_dir), self.max_requeues
        )
        if said:
            print(f"normia: {where} failed with a {fault.kind} fault ({fault.line}); {said}", flush=True)
            for logger in trainer.loggers:
                if hasattr(logger, "final_status"):
                    logger.final_status = "KILLED"  # the requeued job reopens the run

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signals.install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signals.install()
        self._last_step = trainer.global_step
        if trainer.is_global_zero:
            events.record(trainer.default_root_dir, "train_start", step=trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self._last_step:  # inside a gradient-accumulation window: not a step boundary
            return
        self._last_step = step
        if not self._first_step_seen:
            self._first_step_seen = True
            if trainer.is_global_zero:
                events.record(trainer.default_root_dir, "first_step", step=step)
                from normia.launch.node_failure import tag_requeues
                from normia.launch.preflight_run import attach_to_run

                # the MLflow run is open by now (it opens at train start)
                attach_to_run(trainer.loggers)
                tag_requeues(trainer.loggers, trainer.default_root_dir)
        if step % self.check_every_n_steps:
            return
        action = max_over_ranks(signals.STATE.action, pl_module.device)  # the strongest action any rank got
        if action != signals.NONE:
            self._checkpoint_and_exit(trainer, action)

    def _checkpoint_and_exit(self, trainer: L.Trainer, action: int) -> None:
        rank_zero = trainer.is_global_zero
        root = Path(trainer.default_root_dir)
        step = trainer.global_step
        state = signals.STATE
        if rank_zero:
            events.record(
                root,
                "signal",
                signal=state.signal_name or "(another rank)",
                received_at=state.received_at,
                step=step,
            )
            print(
                f"normia: {state.signal_name or 'signal'} received; saving a checkpoint at step {step}",
                flush=True,
            )
        flush_step_metrics(trainer)  # the interrupted step's train/* point, as a Ctrl-C stop keeps it
        started = time.perf_counter()
        # Collective (every rank takes part): step-N.ckpt, complete on disk (any write in flight ended first),
        # and last.ckpt pointing at it, before anyone goes on.
        target = _saver(trainer).save(trainer, wait=True)
        trainer.strategy.barrier("normia-preemption-saved")
        code = 0
        if rank_zero:
            events.record(
                root, "checkpoint", step=step, save_s=time.perf_counter() - started, path=str(target)
            )
            code = self._requeue_or_explain(root, action, step)
        # Nobody exits before rank 0 has requeued (srun would kill rank 0 when another rank exits).
        trainer.strategy.barrier("normia-preemption-requeued")
        for logger in trainer.loggers:
            if hasattr(logger, "final_status"):
                logger.final_status = "KILLED"  # not FAILED: the run goes on after the requeue
        raise SystemExit(code)

    def _requeue_or_explain(self, root: Path, action: int, step: int) -> int:
        job_id = events.slurm_job_id()
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        resume_hint = f"checkpoint at step {step} in {root}; the same command resumes it"
        if job_id is None or not self.requeue:
            print(f"normia: stopping (not a Slurm job, or requeue off); {resume_hint}", flush=True)
            return 0
        if action != signals.REQUEUE:
            print(f"normia: stopping (SIGTERM: preempted or cancelled); {resume_hint}", flush=True)
            return 0
        if restarts >= self.max_requeues:
            print(
                f"normia: not requeued: already restarted {restarts} times (launcher.max_requeues); {resume_hint}",
                flush=True,
            )
            events.record(root, "not_requeued", reason="max_requeues", step=step)
            return 1
        message = scontrol("requeue", job_id, timeout_s=60)
        if message:
            print(f"normia: scontrol requeue {job_id} failed ({message}); {resume_hint}", flush=True)
            events.record(root, "not_requeued", reason=message, step=step)
            return 1
        print(f"normia: job {job_id} requeued; it will resume from step {step}", flush=True)
        events.record(root, "requeued", step=step)
        return 0


def _saver(trainer: L.Trainer) -> Any:
    """The run's PeriodicCheckpoint (training/periodic_checkpoint.py), which every normia job has."""
    from normia.training.periodic_checkpoint import PeriodicCheckpoint

    for callback in trainer.callbacks:
        if isinstance(callback, PeriodicCheckpoint):
            return callback
    raise RuntimeError("SlurmPreemption needs normia's PeriodicCheckpoint among the trainer's callbacks")
