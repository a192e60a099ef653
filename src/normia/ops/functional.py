"""The functional kernel API: validate, then run the Triton kernel or the PyTorch reference (see _backend).

The Triton paths are torch.library custom ops (torch.ops.normia.*, kernels/_ops.py), so torch.compile sees one node
per kernel and compiles a model on them with fullgraph=True; each op sets the CUDA device of its inputs itself.
"""

from __future__ import annotations

import torch

from normia.kernels.add_rms_norm import add_rms_norm_reference, add_rms_norm_triton
from normia.kernels.cross_entropy import cross_entropy_reference, cross_entropy_triton
from normia.kernels.fused_linear_cross_entropy import fused_linear_cross_entropy_chunked
from normia.kernels.layer_norm import layer_norm_reference, layer_norm_triton
from normia.kernels.rms_norm import rms_norm_reference, rms_norm_triton
from normia.kernels.rope import apply_rope_reference, apply_rope_triton
from normia.kernels.swiglu import swiglu_reference, swiglu_triton

from . import _validate as v
from ._backend import use_triton


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x * rsqrt(mean(x^2, -1) + eps) * weight, computed in fp32, returned in x.dtype."""
    fn = "rms_norm"
    v.floating(fn, "x", x)
    v.floating(fn, "weight", weight)
    v.at_least_1d(fn, "x", x)
    v.vector_for_last_dim(fn, "weight", weight, "x", x)
    v.same_device(fn, x=x, weight=weight)
    v.eps(fn, eps)
    if use_triton(fn, x):
        return rms_norm_triton(x, weight, eps)
    return rms_norm_reference(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(x + residual), x + residual): the pre-norm residual step in one pass.

    x and residual may differ in float dtype (a bf16 block output on an fp32 residual stream under autocast): both
    outputs then take torch's promoted dtype, as `x + residual` does. Raises TypeError/ValueError on bad input.
    """
    fn = "add_rms_norm"
    v.floating(fn, "x", x)
    v.floating(fn, "residual", residual)
    v.floating(fn, "weight", weight)
    v.at_least_1d(fn, "x", x)
    v.same_shape(fn, "x", x, "residual", residual)
    v.vector_for_last_dim(fn, "weight", weight, "x", x)
    v.same_device(fn, x=x, residual=residual, weight=weight)
    v.eps(fn, eps)
    if use_triton(fn, x) and use_triton(fn, residual):
        return add_rms_norm_triton(x, residual, weight, eps)
    return add_rms_norm_reference(x, residual, weight, eps)


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """torch.nn.functional.layer_norm over the last dim (statistics in fp32), returned in x.dtype."""
    fn = "layer_norm"
    v.floating(fn, "x", x)
    v.floating(fn, "weight", weight)
    v.at_least_1d(fn, "x", x)
    v.vector_for_last_dim(fn, "weight", weight, "x", x)
    if bias is not None:
        v.floating(fn, "bias", bias)
        v.vector_for_last_dim(fn, "bias", bias, "x", x)
    v.same_device(fn, x=x, weight=weight, bias=bias)
    v.eps(fn, eps)
    if use_triton(fn, x):
        return layer_norm_triton(x, weight, bias, eps)
    return layer_norm_reference(x, weight, bias, eps)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, in fp32, returned in gate.dtype."""
    fn = "swiglu"
    v.floating(fn, "gate", gate)
    v.floating(fn, "up", up)
    v.same_shape(fn, "gate", gate, "up", up)
    v.same_dtype(fn, "gate", gate, "up", up)
    v.same_device(fn, gate=gate, up=up)
    if use_triton(fn, gate):
        return swiglu_triton(gate, up)
    return swiglu_reference(gate, up)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, rotate-half convention: x * cos + rotate_half(x) * sin; x (B, H, T, D), cos/sin (T, D)."""
    fn = "apply_rope"
    v.floating(fn, "x", x)
    v.floating(fn, "cos", cos)
    v.floating(fn, "sin", sin)
    if x.dim() != 4:
        raise ValueError(f"{fn}: x must be (batch, heads, seq, head_dim), got shape {v.shape(x)}")
    seq, dim = x.shape[2], x.shape[3]
    if dim % 2:
        raise ValueError(f"{fn}: head_dim must be even for rotate-half, got x of shape {v.shape(x)}")
    for name, t in (("cos", cos), ("sin", sin)):
        if t.shape != (seq, dim):
            raise ValueError(
                f"{fn}: {name} must have shape ({seq}, {dim}) = (seq, head_dim) of x {v.shape(x)}, "
                f"got {v.shape(t)}; slice the table to the sequence length"
            )
    v.same_device(fn, x=x, cos=cos, sin=sin)
    if use_triton(fn, x):
        if cos.requires_grad or sin.requires_grad:
            raise ValueError(f"{fn}: the Triton kernel treats cos/sin as constant tables; pass them detached")
        return apply_rope_triton(x, cos, sin)
    return apply_rope_reference(x, cos, sin)


def _check_ce(
    fn: str, name: str, rows: torch.Tensor, vocab: int, target: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """target: integer, on rows' device, shaped rows.shape[:-1], classes in [0, vocab) or ignore_index.

    Returns the target to compute with (bad entries replaced by ignore_index when the check is deferred).
    """
    v.integer(fn, "target", target)
    v.same_device(fn, **{name: rows, "target": target})
    return v.targets(fn, name, rows.shape[:-1], target, vocab, ignore_index)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """torch.nn.functional.cross_entropy with classes on the LAST dim: logits (..., V), target (...).

    As torch: ignored rows give loss 0 and gradient 0; "mean" divides by the non-ignored count, so an
    all-ignored batch gives nan with a zero gradient.
    """
    fn = "cross_entropy"
    v.floating(fn, "logits", logits)
    v.at_least_1d(fn, "logits", logits)
    v.reduction(fn, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    target = _check_ce(fn, "logits", logits, logits.shape[-1], target, ignore_index)
    if use_triton(fn, logits):
        return cross_entropy_triton(logits, target, ignore_index, reduction, label_smoothing)
    return cross_entropy_reference(logits, target, ignore_index, reduction, label_smoothing)


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """cross_entropy(hidden @ weight.T + bias, target), chunked over tokens: the full logits never exist.

    hidden (..., H), weight (V, H), bias (V,), target (...). Both backends chunk (the CPU path too).
    """
    fn = "fused_linear_cross_entropy"
    v.floating(fn, "hidden", hidden)
    v.floating(fn, "weight", weight)
    v.at_least_1d(fn, "hidden", hidden)
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"{fn}: weight must be (vocab, {hidden.shape[-1]}) to match hidden's last dim, "
            f"got weight {v.shape(weight)} and hidden {v.shape(hidden)}"
        )
    if not torch.is_autocast_enabled(hidden.device.type):  # under autocast both are cast to its dtype
        v.same_dtype(fn, "hidden", hidden, "weight", weight)
    if bias is not None:
        v.floating(fn, "bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"{fn}: bias must have shape ({weight.shape[0]},) = (vocab,), got {v.shape(bias)}"
            )
    v.reduction(fn, reduction)
    v.same_device(fn, hidden=hidden, weight=weight, bias=bias)
    target = _check_ce(fn, "hidden", hidden, weight.shape[0], target, ignore_index)
    return fused_linear_cross_entropy_chunked(
        hidden, weight, target, bias, ignore_index, reduction, use_triton=use_triton(fn, hidden)
    )
