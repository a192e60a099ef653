"""Checkpoints that are never half-written (temp file + atomic rename) and never unpickle arbitrary code
(torch.load(weights_only=True)); and the helpers that find and read them for resume.

Two formats, both read everywhere (resume, eval, predict, export, reproduce): one file (`*.ckpt`, DDP and one
process) and a sharded folder (`*.ckpt/`, FSDP2 through training/sharded_strategy.py). In a run folder,
`checkpoints/step-NNNNNNNN.ckpt` are the periodic saves and `checkpoints/last.ckpt` a symbolic link to the newest
complete one (training/periodic_checkpoint.py); runs of earlier normia versions hold a real last.ckpt file."""

from __future__ import annotations

import glob
import re
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from normia.errors import UserError
from normia.training.atomic_text import write_atomic
from normia.training.checkpoint_check import (
    DamagedCheckpoint,
    checkpoint_damage,
    damage_of,
    refused_by_weights_only,
    torch_load,
)
from normia.training.checkpoint_writer import WRITER, stage
from normia.training.sharded_read import full_checkpoint, is_sharded, read_meta

LAST = "last.ckpt"
STEP_NAME = re.compile(r"^step-(\d+)\.ckpt$")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target and renames: the target is the old checkpoint or the new one, never a part of one,
    whatever kills the process and wherever $TMPDIR is (Lightning's own writer copies across filesystems).

    asynchronous=True: the state is staged (copied to host memory) and written by the background writer
    (training/checkpoint_writer.py); a save first waits for the previous write."""

    def __init__(self, asynchronous: bool = False) -> None:
        super().__init__()
        self.asynchronous = asynchronous

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        WRITER.wait()  # one write in flight; its stale temporaries are then really stale
        _remove_stale_temporaries(target)
        if target.is_dir():  # a sharded checkpoint of the same name (a run moved from FSDP to DDP)
            import shutil

            shutil.rmtree(target)
        if not self.asynchronous:
            write_atomic(target, lambda handle: torch.save(checkpoint, handle), binary=True)
            return
        staged = stage(checkpoint)
        WRITER.submit(lambda: write_atomic(target, lambda handle: torch.save(staged, handle), binary=True))

    def remove_checkpoint(self, path: Any) -> None:
        """A file or a sharded folder."""
        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> Any:
        return load_checkpoint_file(path, map_location)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ModelCheckpoint with its state key computed once. Lightning reads a callback's state key at every
    hook of every step (to name a profiler section), and ModelCheckpoint builds it from the repr of its settings
    each time (~2 us a read, a dozen reads a step per checkpoint callback; issue 15). The key is the same string
    (this class keeps Lightning's class name, which the key includes), so checkpoints stay interchangeable."""

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_normia_state_key")
        if key is None:
            key = self.__dict__["_normia_state_key"] = super().state_key
        return key

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        """Lightning's save, with the time it held the step loop counted (the run's checkpoint/blocked_s)."""
        started = time.perf_counter()
        super()._save_checkpoint(trainer, filepath)
        WRITER.add_blocked(time.perf_counter() - started)


def _remove_stale_temporaries(target: Path) -> None:
    """A writer killed before its rename leaves its temporary file (as large as the checkpoint): remove those of
    this target. Only one process writes a given checkpoint, so none of them is still being written."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def is_checkpoint(path: str | Path) -> bool:
    """A one-file checkpoint or a complete sharded folder (a link to either counts)."""
    return Path(path).is_file() or is_sharded(path)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The whole checkpoint in the one-file layout, from either format. weights_only=True; a checkpoint that
    needs arbitrary unpickling is refused with a clear message (UserError), as is a missing one, and a damaged one
    (DamagedCheckpoint: cut short, overwritten). A file of torch's older serialization reads too."""
    try:
        if is_sharded(path):
            return _full_checkpoint(path)
        return torch_load(path, map_location=map_location)
    except FileNotFoundError:
        if Path(path).exists():  # a sharded folder missing one of its shard files
            raise DamagedCheckpoint(
                f"checkpoint {path} is damaged: a file of it is missing; restore it from a copy"
            ) from None
        raise UserError(f"checkpoint {path} does not exist") from None
    except Exception as err:
        if refused_by_weights_only(err):
            raise UserError(
                f"refusing to load {path}: it holds objects that only arbitrary unpickling can rebuild, which could "
                "run code; re-save it as plain tensors/state dicts or use a checkpoint written by normia"
            ) from None
        reason = damage_of(err) or checkpoint_damage(
            path
        )  # the check reads it again on the CPU, step by step
        if reason is None:
            raise
        raise DamagedCheckpoint(
            f"checkpoint {path} is damaged: {reason}; restore it from a copy, or give another checkpoint"
        ) from None


def _full_checkpoint(path: str | Path) -> dict[str, Any]:
    """full_checkpoint, with DCP's CheckpointException (a BaseException that wraps what a rank's read raised)
    turned into the error it wraps."""
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        return full_checkpoint(path)
    except CheckpointException as err:
        failures = list(getattr(err, "failures", {}).values())
        first = failures[0] if failures else None
        cause = first[0] if isinstance(first, tuple) and first and isinstance(first[0], Exception) else first
        raise (cause if isinstance(cause, Exception) else RuntimeError(str(err))) from None


def step_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """The complete periodic checkpoints (step-N.ckpt, file or folder) of a checkpoints folder, oldest first."""
    found = []
    base = Path(folder)
    if base.is_dir():
        for entry in base.iterdir():
            match = STEP_NAME.match(entry.name)
            if match and is_checkpoint(entry):
                found.append((int(match.group(1)), entry))
    return sorted(found)


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint a resume of this run folder starts from: checkpoints/last.ckpt (a link to the newest
    periodic save, or a file written by an earlier normia), else the newest complete step-N.ckpt (a process killed
    between writing a checkpoint and linking it), else None."""
    folder = Path(output_dir) / "checkpoints"
    path = folder / LAST
    if is_checkpoint(path):
        return path
    steps = step_checkpoints(folder)
    return steps[-1][1] if steps else None


def readable_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint of a run folder that reads (last.ckpt, then step-N.ckpt newest first) and the newer
    ones skipped as damaged, each with its one-line reason: what a resume starts from (issue 25). (None, [...]) when
    every checkpoint there is damaged, (None, []) when there is none."""
    folder = Path(output_dir) / "checkpoints"
    candidates = [folder / LAST] if is_checkpoint(folder / LAST) else []
    candidates += [path for _, path in reversed(step_checkpoints(folder))]
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for path in candidates:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        reason = checkpoint_damage(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


def read_normia_state(path: str | Path) -> dict[str, Any]:
    """The small 'normia' section (MLflow run id, ...) of a checkpoint, read through mmap without loading weights
    (a sharded checkpoint's meta.pt holds it)."""
    if is_sharded(path):
        return dict(read_meta(path).get("normia", {}))
    return dict(load_checkpoint_file(path).get("normia", {}))
