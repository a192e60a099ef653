"""Where each job writes: a fresh timestamped folder per run, a stable folder per sweep job (so re-running a sweep
skips finished jobs and resumes the others), or the folder of the run being resumed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from omegaconf import DictConfig

from normia.errors import UserError
from normia.train.checkpoint import LAST


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
    from omegaconf import OmegaConf

    from normia.config.overrides import job_identity
    from normia.config.secrets import redact_override

    saved = Path(cfg.paths.output_dir) / "config.yaml"
    if not saved.is_file():
        return
    recorded = [str(o) for o in (OmegaConf.load(saved).get("overrides") or [])]
    mine = [redact_override(str(o)) for o in cfg.overrides]
    try:
        same = job_identity(recorded) == job_identity(mine)
    except UserError:
        same = False
    if not same:
        raise UserError(
            f"{cfg.paths.output_dir} holds a job with other settings ({' '.join(recorded) or 'defaults'}), "
            f"not {' '.join(mine) or 'defaults'}: it will not be resumed or reported; move or delete that folder"
        )


def latest_run(base: Path) -> Path:
    runs = sorted(
        (p.parent.parent for p in base.glob(f"*/checkpoints/{LAST}")), key=lambda p: p.stat().st_mtime
    )
    if not runs:
        raise UserError(
            f"resume=true but no run of '{base.name}' has a checkpoint under {base}; run without resume first"
        )
    return runs[-1]


def _run_dir_of(path: Path) -> Path:
    if path.is_dir():
        if not (path / "checkpoints" / LAST).is_file():
            raise UserError(
                f"resume={path}: no checkpoints/{LAST} in that folder; give a run folder or a .ckpt file"
            )
        return path
    if path.is_file() and path.suffix == ".ckpt":
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
