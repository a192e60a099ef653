"""Checkpoints that are never half-written (temp file + atomic rename) and never unpickle arbitrary code
(torch.load(weights_only=True)); and the helpers that find and read them for resume."""

from __future__ import annotations

import glob
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from normia.errors import UserError
from normia.training.atomic_text import write_atomic

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target and renames: the target is the old checkpoint or the new one, never a part of one,
    whatever kills the process and wherever $TMPDIR is (Lightning's own writer copies across filesystems)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(target)
        write_atomic(target, lambda handle: torch.save(checkpoint, handle), binary=True)

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


def _remove_stale_temporaries(target: Path) -> None:
    """A writer killed before its rename leaves its temporary file (as large as the checkpoint): remove those of
    this target. Only one process writes a given checkpoint, so none of them is still being written."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load with weights_only=True; a checkpoint that needs arbitrary unpickling is refused with a clear message."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        if "weights_only" in str(err) or isinstance(err, pickle.UnpicklingError):
            raise UserError(
                f"refusing to load {path}: it holds objects that only arbitrary unpickling can rebuild, which could "
                "run code; re-save it as plain tensors/state dicts or use a checkpoint written by normia"
            ) from None
        raise
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None


def last_checkpoint(output_dir: str | Path) -> Path | None:
    path = Path(output_dir) / "checkpoints" / LAST
    return path if path.is_file() else None


def read_normia_state(path: str | Path) -> dict[str, Any]:
    """The small 'normia' section (MLflow run id, ...) of a checkpoint, read through mmap without loading weights."""
    return dict(load_checkpoint_file(path).get("normia", {}))
