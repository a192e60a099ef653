"""Where each job writes: a fresh timestamped folder per run, a stable folder per sweep job (so re-running a sweep
skips finished jobs and resumes the others), or the folder of the run being resumed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from omegaconf import DictConfig

from normia.errors import UserError
from normia.training.checkpoint import LAST, is_checkpoint, last_checkpoint
from normia.training.sharded_read import is_sharded


def sweep_id(identity: str) -> str:
    """Same sweep -> same id, whatever the order or spelling of its arguments (see overrides.sweep_identity)."""
    return hashlib.sha1(identity.encode()).hexdigest()[:10]


def assign_output_dir(cfg: DictConfig, sweep: str | None = None, job_folder: str | None = None) -> None:
    """Set paths.output_dir unless the user did: a sweep job's own folder (named from its overrides, see
    overrides.job_folder_name), the run being resumed, or a fresh timestamped folder."""
    if cfg.paths.output_dir:
        return
    base = Path(cfg.paths.output_root) / cfg.name
    resume = cfg.resume
    if sweep is not None:
        cfg.paths.output_dir = str(base / "multirun" / sweep / (job_folder or "job"))
    elif resume is True or str(resume).lower() == "true":
        cfg.paths.output_dir = str(latest_run(base))
    elif isinstance(resume, str) and resume not in ("", "false", "False"):
        cfg.paths.output_dir = str(_run_dir_of(Path(resume)))
    else:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        candidate, n = base / stamp, 1
        while candidate.exists():
            candidate, n = base / f"{stamp}_{n}", n + 1
        cfg.paths.output_dir = str(candidate)


def check_same_job(cfg: DictConfig) -> None:
    """A sweep job continues (or reports) only what it wrote itself: refuse a folder whose config.yaml was written
    by a job with other overrides (a folder of another normia version, or paths.output_dir set by hand).
    Raises UserError naming the folder and both sets of overrides."""
    import yaml

    from normia.config.overrides import job_identity

    saved = Path(cfg.paths.output_dir) / "config.yaml"
    if not saved.is_file():
        return
    # Read as text: loading it with OmegaConf would interpolate a recorded `tags.who=${name}`.
    recorded = [str(o) for o in (yaml.safe_load(saved.read_text()) or {}).get("overrides") or []]
    mine = _masked(_typed_overrides(cfg))
    try:
        same = job_identity(recorded) in {
            job_identity(mine),
            job_identity(_masked(_interpolated_overrides(cfg))),
        }
    except UserError:
        same = False
    if not same:
        raise UserError(
            f"{cfg.paths.output_dir} holds a job with other settings ({' '.join(recorded) or 'defaults'}), "
            f"not {' '.join(mine) or 'defaults'}: it will not be resumed or reported; move or delete that folder"
        )


def _masked(overrides: list[str]) -> list[str]:
    from normia.config.secrets import redact_override

    return [redact_override(o) for o in overrides]


def _typed_overrides(cfg: DictConfig) -> list[str]:
    from normia.config.compose import recorded_overrides

    return recorded_overrides(cfg)


def _interpolated_overrides(cfg: DictConfig) -> list[str]:
    """The overrides with their ${...} resolved, as a rank started from a resolved config records them."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    probe = cfg.copy()
    probe.overrides = _typed_overrides(cfg)
    try:
        return [str(o) for o in OmegaConf.to_container(probe, resolve=True)["overrides"]]
    except OmegaConfBaseException:
        return _typed_overrides(cfg)


def latest_run(base: Path) -> Path:
    runs = sorted(
        (run for run in base.glob("*") if last_checkpoint(run) is not None),
        key=lambda run: _newest_checkpoint_time(run),
    )
    if not runs:
        raise UserError(
            f"resume=true but no run of '{base.name}' has a checkpoint under {base}; run without resume first"
        )
    return runs[-1]


def _newest_checkpoint_time(run: Path) -> float:
    last = last_checkpoint(run)
    return last.stat().st_mtime if last is not None else 0.0


def _run_dir_of(path: Path) -> Path:
    if path.is_dir() and not is_sharded(path):
        if last_checkpoint(path) is None:
            raise UserError(
                f"resume={path}: no checkpoints/{LAST} in that folder; give a run folder or a .ckpt file"
            )
        return path
    if is_checkpoint(path) and path.suffix == ".ckpt":
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    raise UserError(f"resume={path}: no such run folder or .ckpt file; use resume=true for the latest run")


def check_writable(output_dir: str) -> None:
    """The job folder must be creatable: its nearest existing ancestor is a writable folder. Nothing is created
    here, so a refused job leaves nothing behind."""
    path = Path(output_dir).absolute()
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "not a folder" if not ancestor.is_dir() else "not writable"
        raise UserError(
            f"cannot write to output directory {output_dir} ({ancestor} is {reason}); "
            "set paths.output_root=<writable folder>"
        )
