"""Run ONE resolved job in this process (one rank): build, fit, summarise. Launchers (local processes, Slurm)
all end here; a job whose output_dir holds checkpoints/last.ckpt resumes from it."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from normia.config.secrets import redact
from normia.errors import Stopped, UserError
from normia.training.atomic_text import write_text_atomic
from normia.training.build import build_callbacks, build_tracker, build_trainer, instantiate_node
from normia.training.callbacks import StopRequested
from normia.training.checkpoint import read_normia_state, readable_checkpoint
from normia.training.checkpoint_check import DamagedCheckpoint, require_readable
from normia.training.checkpoint_writer import WRITER
from normia.training.consolidate import consolidated_for_resume
from normia.training.health import json_safe
from normia.training.module import TaskModule
from normia.training.process_group import close_gloo_group_at_exit
from normia.training.quiet import quiet_libraries
from normia.training.refusal import nothing_left_if_refused, remove_run_folder
from normia.training.resume_check import describe, recorded_config, resume_changes
from normia.training.sharded_read import is_sharded
from normia.training.summary import print_summary, run_summary
from normia.training.watchdog import enable_flight_recorder

DONE = "done.json"


def run_training(cfg: DictConfig) -> float | None:
    """Fit one job; return the monitored metric (best value if a best checkpoint was tracked)."""
    started = time.perf_counter()
    atexit.unregister(close_gloo_group_at_exit)  # registered once, however many fits this process runs
    atexit.register(close_gloo_group_at_exit)
    WRITER.reset()  # this fit's checkpoint counters (normia search runs several fits in one process)
    quiet_libraries()
    output_dir = Path(cfg.paths.output_dir)
    os.environ["NORMIA_KERNELS"] = str(cfg.kernels)
    enable_flight_recorder(
        int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)
    )  # before Lightning's process group
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Model and data first: a bad input (missing file, wrong column) is refused before anything is written.
    model = instantiate_node(cfg.model, "model")
    if cfg.trainer.precision == "float8":
        from normia.training.float8 import prepare_float8

        # Before TaskModule: FSDP2 (configure_model) and torch.compile (setup) must see the float8 layers. This
        # node's GPU is checked again (a Slurm partition's preset may not say its GPU model).
        prepare_float8(model)
    datamodule = instantiate_node(cfg.data, "data")

    ckpt_path = _checkpoint_to_resume(cfg, output_dir)
    state = read_normia_state(ckpt_path) if ckpt_path else {}
    run_id = state.get("mlflow_run_id")
    changes = describe(resume_changes(cfg, recorded_config(ckpt_path, state))) if ckpt_path else ""
    rank_zero = _global_rank() == 0
    fresh = ckpt_path is None and not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer: L.Trainer | None = None
    with nothing_left_if_refused(
        output_dir if fresh and rank_zero else None,
        Path(cfg.paths.output_root),
        lambda: trainer is not None and trainer.global_step > 0,
    ):
        module = TaskModule(model, cfg.optim, compile_model=cfg.compile)
        tracker = build_tracker(cfg, run_id, changes)
        callbacks, roles = build_callbacks(cfg, tracker)
        trainer = _lightning_checked(lambda: build_trainer(cfg, tracker, callbacks))
        if rank_zero:
            (output_dir / DONE).unlink(missing_ok=True)
            write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(redact(cfg)))
        if ckpt_path and rank_zero:
            run = f" (MLflow run {run_id})" if run_id else ""
            print(
                f"resuming from {ckpt_path}{run}" + (f"\n  with changes: {changes}" if changes else ""),
                flush=True,
            )
        stopped = roles["stop"]
        try:
            _fit(trainer, module, datamodule, ckpt_path)
        finally:
            if ckpt_path is not None and ckpt_path.name.startswith(".resume-"):
                ckpt_path.unlink(missing_ok=True)  # the one-file copy of a sharded checkpoint: used, not kept
    result = _monitored(trainer, roles, cfg.monitor)
    summary = run_summary(cfg, trainer, roles, tracker, result, time.perf_counter() - started)
    if trainer.is_global_zero:
        print_summary(summary)
        if not stopped.stopped and not cfg.trainer.fast_dev_run:
            write_text_atomic(output_dir / DONE, json.dumps(json_safe(summary), indent=2, allow_nan=False))
        if cfg.trainer.fast_dev_run and fresh:
            # debug=fast_dev_run checks the path and keeps nothing (issue 25 D: it left config.yaml, checkpoints/)
            remove_run_folder(output_dir, Path(cfg.paths.output_root))
            print(f"debug=fast_dev_run: nothing kept ({output_dir} removed)", flush=True)
    if stopped.stopped:
        raise Stopped(stopped.exit_code)
    return result


def _fit(trainer: L.Trainer, module: TaskModule, datamodule: Any, ckpt_path: Path | None) -> None:
    try:
        with contextlib.suppress(StopRequested):
            _lightning_checked(
                lambda: trainer.fit(
                    module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None
                ),
                trainer,
            )
    except SystemExit as err:  # a second Ctrl-C reached Lightning, which tears down and calls exit(1)
        if err.code == 1:
            raise KeyboardInterrupt from None
        raise


def _lightning_checked(step: Callable[[], Any], trainer: L.Trainer | None = None) -> Any:
    """Run a Trainer construction or fit; Lightning's own refusal of a setting (before the first step) becomes a
    one-line UserError."""
    try:
        return step()
    except (ValueError, MisconfigurationException) as err:
        if (trainer is None or trainer.global_step == 0) and _raised_by_lightning(err):
            raise UserError(f"Lightning refused the trainer settings: {' '.join(str(err).split())}") from None
        raise


def _raised_by_lightning(err: BaseException) -> bool:
    """A configuration check inside Lightning (not a bug in a model or data module) raised this."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}lightning{os.sep}" in tb.tb_frame.f_code.co_filename


def _checkpoint_to_resume(cfg: DictConfig, output_dir: Path) -> Path | None:
    """The checkpoint this job resumes from, in a format its strategy loads: a sharded folder resumed without
    FSDP (DDP, one process) is first consolidated into one file beside it (checkpoints/.resume-<name>)."""
    if isinstance(cfg.resume, str) and cfg.resume.endswith(".ckpt"):
        path: Path | None = Path(cfg.resume)
        require_readable(path)
    else:
        path, skipped = readable_checkpoint(output_dir)
        if path is None and skipped:
            raise DamagedCheckpoint(
                f"no checkpoint of {output_dir} reads ({len(skipped)} damaged, newest {skipped[0][0].name}: "
                f"{skipped[0][1]}); restore one from a copy, or resume=false to start over"
            )
        if skipped and _global_rank() == 0:
            for damaged, reason in skipped:  # the next line printed says which one it resumes from
                print(f"resume: skipping {damaged}: {reason}", flush=True)
    if path is not None and is_sharded(path) and cfg.trainer.strategy != "fsdp":
        path = consolidated_for_resume(path, output_dir, rank_zero=_global_rank() == 0)
    return path


def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 0


def _monitored(trainer: L.Trainer, roles: dict[str, Any], monitor: str) -> float | None:
    best = roles["best"].best_model_score
    if best is not None:
        return float(best)
    value = trainer.callback_metrics.get(monitor)
    return float(value) if value is not None else None
