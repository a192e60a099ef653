"""Read a sharded checkpoint (a folder written by torch.distributed.checkpoint, DCP) in ONE process, without a
process group: the whole state as the one-file format has it, for eval, predict, export, reproduce, consolidate
and a resume on DDP or one process. Import-light: torch only.

The folder: `.metadata` (DCP's index of every tensor's shards), `__<rank>_<i>.distcp` (each rank's shards), and
`meta.pt` (Lightning's part of the checkpoint: loops, callbacks, LR schedulers, normia's state). DCP's own reader
unpickles `.metadata` with plain pickle, which runs whatever code the file names; a checkpoint is data someone
may hand over, so that file is read here through an unpickler that only builds DCP's metadata classes (normia
never unpickles arbitrary objects: training/checkpoint.py's rule)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

META = (
    "meta.pt"  # Lightning's name (lightning.fabric.utilities.load._METADATA_FILENAME) for the non-tensor part
)
DCP_INDEX = ".metadata"

# What DCP's metadata pickle names: its dataclasses and the torch/pathlib values they hold. Nothing else is built.
_ALLOWED_MODULE_PREFIXES = ("torch.distributed.checkpoint.",)
_ALLOWED = {
    ("torch", "Size"),
    ("torch._utils", "_get_layout"),
    ("torch.serialization", "_get_layout"),  # a layout from its name (torch.strided)
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in _ALLOWED or module.startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a DCP checkpoint's metadata")


def is_sharded(path: str | Path) -> bool:
    """A folder holding a complete sharded checkpoint (DCP index and Lightning's meta.pt)."""
    folder = Path(path)
    return folder.is_dir() and (folder / DCP_INDEX).is_file() and (folder / META).is_file()


def check_index(path: str | Path) -> None:
    """Read DCP's `.metadata` through the allow-list unpickler. Raises pickle.UnpicklingError naming what a crafted
    file asked for (before DCP's own reader, which unpickles it with plain pickle, ever opens it)."""
    with (Path(path) / DCP_INDEX).open("rb") as handle:
        _MetadataUnpickler(handle).load()


def _safe_reader(path: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    class SafeFileSystemReader(FileSystemReader):
        """FileSystemReader whose metadata is read by the restricted unpickler above."""

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            with (path / DCP_INDEX).open("rb") as handle:
                metadata = _MetadataUnpickler(handle).load()
            if getattr(metadata, "storage_meta", None) is None:
                from torch.distributed.checkpoint.metadata import StorageMeta

                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeFileSystemReader(path)


def read_dcp(path: str | Path) -> dict[str, Any]:
    """Every tensor and object of the DCP part, in full, nested as it was saved ({"state_dict": {...},
    "optimizer_0": {...}}). Raises pickle.UnpicklingError for a `.metadata` naming anything but DCP's classes."""
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    check_index(path)
    state: dict[str, Any] = {}
    # torch's own one-process reader (format_utils.dcp_to_torch_save does exactly this); private names guarded
    # by tests/test_private_apis.py.
    _load_state_dict(
        state, storage_reader=_safe_reader(Path(path)), planner=_EmptyStateDictLoadPlanner(), no_dist=True
    )
    return state


def read_meta(path: str | Path) -> dict[str, Any]:
    """Lightning's non-tensor part (loops, callbacks, normia state) without reading any shard."""
    return torch.load(Path(path) / META, map_location="cpu", weights_only=True)


def optimizer_by_param_ids(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state keyed by parameter names (DCP's, from get_optimizer_state_dict) keyed by position
    instead, as torch.optim.Optimizer.state_dict() has it: parameters are numbered in the order of the param
    groups' lists, which is the optimizer's own order."""
    order: dict[str, int] = {}
    groups = []
    for group in state.get("param_groups", []):
        ids = []
        for name in group["params"]:
            order.setdefault(name, len(order))
            ids.append(order[name])
        groups.append({**group, "params": ids})
    per_param = {order[name]: value for name, value in state.get("state", {}).items() if name in order}
    return {"state": per_param, "param_groups": groups}


def full_checkpoint(path: str | Path) -> dict[str, Any]:
    """The sharded checkpoint at `path` as one-file checkpoint content: Lightning's meta part, plus "state_dict"
    (full tensors) and "optimizer_states" (a list, keyed by parameter position). Memory: the whole model and
    optimizer state in host memory, once."""
    checkpoint = read_meta(path)
    shards = read_dcp(path)
    checkpoint["state_dict"] = shards.pop("state_dict", {})
    optimizers = sorted(
        (k for k in shards if k.startswith("optimizer_")), key=lambda k: int(k.split("_", 1)[1])
    )
    checkpoint["optimizer_states"] = [optimizer_by_param_ids(shards[k]) for k in optimizers]
    return checkpoint
