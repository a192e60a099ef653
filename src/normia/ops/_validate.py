"""Input checks shared by the ops: a bad call raises ValueError/TypeError naming the argument, never runs wrong."""

from __future__ import annotations

import torch

from . import _deferred

REDUCTIONS = ("none", "sum", "mean")
INDEX_DTYPES = (torch.int64, torch.int32)


def shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.dim() == 1 else "") + ")"


def tensor(fn: str, name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def floating(fn: str, name: str, t: object) -> torch.Tensor:
    t = tensor(fn, name, t)
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def integer(fn: str, name: str, t: object) -> torch.Tensor:
    t = tensor(fn, name, t)
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be an int64 or int32 tensor of class indices, got dtype {t.dtype}"
        )
    return t


def same_device(fn: str, **tensors: torch.Tensor | None) -> None:
    named = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in named.values()}
    if len(devices) > 1:
        where = ", ".join(f"{k} on {v.device}" for k, v in named.items())
        raise ValueError(f"{fn}: all tensors must be on one device, got {where}; move them with .to(device)")


def at_least_1d(fn: str, name: str, t: torch.Tensor) -> None:
    if t.dim() == 0 or t.shape[-1] == 0:
        raise ValueError(f"{fn}: {name} must have a non-empty last dimension, got shape {shape(t)}")


def vector_for_last_dim(fn: str, name: str, v: torch.Tensor, x_name: str, x: torch.Tensor) -> None:
    if v.dim() != 1 or v.shape[0] != x.shape[-1]:
        raise ValueError(
            f"{fn}: {name} must have shape ({x.shape[-1]},) to match the last dim of {x_name}, "
            f"got {name} {shape(v)} and {x_name} {shape(x)}"
        )


def same_shape(fn: str, a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: {a_name} and {b_name} must have the same shape, got {shape(a)} and {shape(b)}"
        )


def same_dtype(fn: str, a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{fn}: {a_name} and {b_name} must have the same dtype, got {a.dtype} and {b.dtype}")


def reduction(fn: str, value: str) -> None:
    if value not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {', '.join(REDUCTIONS)}, got {value!r}")


def eps(fn: str, value: float) -> None:
    if not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{fn}: eps must be a non-negative number, got {value!r}")


def targets(
    fn: str, logits_name: str, lead_shape: torch.Size, target: torch.Tensor, vocab: int, ignore_index: int
) -> torch.Tensor:
    """target must match the leading shape and hold classes in [0, vocab) or ignore_index.

    Returns the target to compute with. Checked at the call (one host sync) for CPU tensors or with
    NORMIA_CHECK_TARGETS=sync; otherwise deferred (see _deferred.py): the first bad target is recorded on the device
    for `raise_deferred_errors()`, and the returned copy holds ignore_index in its place, so no kernel (nor torch's
    reference, whose CUDA kernel would assert) indexes outside the logits. Under torch.compile it is always deferred:
    the record is a few device ops in the graph, where a host read would break it.
    """
    if target.shape != lead_shape:
        lead = "(" + ", ".join(str(s) for s in lead_shape) + ("," if len(lead_shape) == 1 else "") + ")"
        raise ValueError(
            f"{fn}: target shape {shape(target)} must equal {logits_name}'s shape without its last dim, {lead}"
        )
    if not target.numel():
        return target
    bad = ((target < 0) | (target >= vocab)) & (target != ignore_index)
    if torch.compiler.is_compiling() or _deferred.defers(target.device):
        _deferred.record(fn, target, bad, vocab, ignore_index)
        return torch.where(bad, ignore_index, target)
    if bool(bad.any()):
        flat = bad.reshape(-1).nonzero()[0, 0]
        value = int(target.reshape(-1)[flat])
        raise ValueError(_deferred.message(fn, value, int(flat), vocab, ignore_index))
    return target
