"""Does a checkpoint read? A quota hit during a copy, a full disk or a killed `cp` leaves a file cut short; a resume,
`normia eval` or predict on it used to end in torch's zip-reader traceback. This says so in one line, and lets a
resume fall back to the newest checkpoint that reads (issue 25).

What is checked is the structure, cheaply: a one-file checkpoint is opened as torch.load does with mmap (its zip
directory at the end of the file and its pickled structure; no tensor is read), a sharded folder has its index, its
meta.pt and every shard file at least as long as the index says. Bytes changed inside a tensor are not caught: that
needs a checksum of the whole file, as long to read as the checkpoint itself. Import-light: torch only.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from normia.errors import UserError
from normia.training.sharded_read import DCP_INDEX, META, _MetadataUnpickler, is_sharded

# torch's messages for a file that is cut short or is not a checkpoint at all (RuntimeError is also raised for other
# reasons, e.g. a CUDA tensor on a machine without CUDA, which stay errors of their own).
_DAMAGE_MARKERS = ("PytorchStreamReader", "central directory", "unexpected EOF", "corrupted", "zip archive")
_MMAP_REFUSED = "mmap can only be used"


class DamagedCheckpoint(UserError):
    """A checkpoint that exists but cannot be read (cut short, overwritten, not a checkpoint)."""


def torch_load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load(weights_only=True) through mmap (tensors are read when used); a file of the older serialization
    (torch.save(_use_new_zipfile_serialization=False), torch < 1.6 or that setting) has no mmap form and is read
    whole. Raises what torch.load raises."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except RuntimeError as err:
        if _MMAP_REFUSED not in str(err):
            raise
    return torch.load(path, map_location=map_location, weights_only=True)


def damage_of(err: BaseException) -> str | None:
    """The one-line reason if `err`, raised while reading a checkpoint, means the file is damaged; else None."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (EOFError, KeyError, IndexError, UnicodeDecodeError)) or (
        isinstance(err, OSError) and not isinstance(err, FileNotFoundError)
    ):
        return f"it ends early or is not a checkpoint ({type(err).__name__}: {text[:120]})"
    if isinstance(err, pickle.UnpicklingError) and not refused_by_weights_only(err):
        return f"its pickled part does not read ({text[:120]})"
    if isinstance(err, RuntimeError) and any(marker in str(err) for marker in _DAMAGE_MARKERS):
        return "it is cut short or is not a checkpoint (" + text.split(". ")[0][:120] + ")"
    return None


def refused_by_weights_only(err: BaseException) -> bool:
    """True for torch's (or the sharded index reader's) refusal of an object it will not build: not damage, a
    checkpoint holding more than tensors and plain values."""
    text = str(err)
    return "weights_only" in text or "Weights only load failed" in text or "is not part of a DCP" in text


def checkpoint_damage(path: str | Path) -> str | None:
    """Why the checkpoint at `path` (one file or sharded folder) does not read, in one line; None when it reads.

    Costs a read of the zip directory and the pickled structure (one file) or of the index and meta.pt (sharded)."""
    path = Path(path)
    try:
        if is_sharded(path):
            return _sharded_damage(path)
        if path.stat().st_size == 0:
            return "it is empty (0 bytes)"
        torch_load(path)
    except FileNotFoundError:
        return "a file of it is missing"
    except Exception as err:  # any failure to read is reported; unknown ones with their type
        if refused_by_weights_only(err):
            return None  # it reads; what it holds is refused where it is loaded, with its own message
        return damage_of(err) or f"{type(err).__name__}: {str(err).strip()[:120]}"
    return None


def _sharded_damage(folder: Path) -> str | None:
    """A sharded folder: its index reads, meta.pt reads, and every shard file holds the bytes the index points at."""
    with (folder / DCP_INDEX).open("rb") as handle:
        metadata = _MetadataUnpickler(handle).load()
    torch_load(folder / META)
    needed: dict[str, int] = {}
    for info in (getattr(metadata, "storage_data", None) or {}).values():
        end = int(info.offset) + int(info.length)
        needed[str(info.relative_path)] = max(needed.get(str(info.relative_path), 0), end)
    for name, end in sorted(needed.items()):
        shard = folder / name
        if not shard.is_file():
            return f"its shard {name} is missing"
        if shard.stat().st_size < end:
            return f"its shard {name} is cut short ({shard.stat().st_size} of at least {end} bytes)"
    return None


def require_readable(path: str | Path) -> None:
    """Raise DamagedCheckpoint (one line: what is wrong and what to do) unless the checkpoint at `path` reads."""
    reason = checkpoint_damage(path)
    if reason is not None:
        raise DamagedCheckpoint(
            f"checkpoint {path} is damaged: {reason}; restore it from a copy, or give another checkpoint "
            "(the run folder's checkpoints/step-*.ckpt)"
        )
