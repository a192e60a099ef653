"""Peak memory of a region of code, above what was allocated before it, and the free memory a shape must fit in.

On a GPU this is the caching allocator's own peak counter. A CPU has no such counter in PyTorch, so there every
storage created by an operator inside the region is counted until it is freed (a TorchDispatchMode), which sees
what the region allocates, autograd's saved tensors included, and not the allocator's caching.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _StorageTracker(TorchDispatchMode):
    def __init__(self, preexisting: frozenset[int]) -> None:
        super().__init__()
        self._preexisting = (
            preexisting  # data pointers of the inputs: in-place results on them are not new memory
        )
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._track(value)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        nbytes = storage.nbytes()
        if key in self._sizes or nbytes == 0 or storage.data_ptr() in self._preexisting:
            return  # a view or an in-place result: the storage is already counted or predates the region
        self._sizes[key] = nbytes
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


def peak_bytes(
    fn: Callable[[], object], device: torch.device, inputs: list[torch.Tensor] | None = None
) -> int:
    """Peak bytes allocated while `fn()` runs, above the memory allocated before it (its inputs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        del result
        return torch.cuda.max_memory_allocated(device) - base
    tracker = _StorageTracker(frozenset(t.untyped_storage().data_ptr() for t in inputs or []))
    with tracker:
        result = fn()
    del result
    return tracker.peak


def free_bytes(device: torch.device) -> int:
    """Memory a new allocation can still take on `device`."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )
