"""Residual add fused with RMSNorm: (rms_norm(x + residual), x + residual) in one pass over memory.

Why: in a pre-norm transformer the residual stream is read, added to and normalised at every block; fusing
saves one full read and write of the activations. The kernels live in rms_norm.py (HAS_RESIDUAL / HAS_DS
flags).
"""

from __future__ import annotations

import torch

from ._ops import on_device, op, rows_of
from .rms_norm import rms_norm_bwd, rms_norm_forward, rms_norm_reference


def add_rms_norm_reference(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition: s = x + residual (torch's dtype promotion), then rms_norm(s); returns (normed, s)."""
    s = x + residual
    return rms_norm_reference(s, weight, eps), s


def _fwd_fake(x, residual, weight, eps):
    dtype = torch.promote_types(x.dtype, residual.dtype)
    y = torch.empty(x.shape, dtype=dtype, device=x.device)
    return y, torch.empty_like(y), x.new_empty(rows_of(x), dtype=torch.float32)


@op("add_rms_norm_fwd", fake=_fwd_fake)
def add_rms_norm_fwd(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, s, rstd): s = x + residual and y = rms_norm(s), contiguous in x's shape and the promoted dtype."""
    with on_device(x):
        y, s, rstd = rms_norm_forward(x, weight, eps, residual=residual)
    return y, s, rstd


def _setup(ctx, inputs, output) -> None:
    x, residual, weight, _ = inputs
    ctx.save_for_backward(output[1], weight, output[2])
    ctx.dtypes = (x.dtype, residual.dtype)


def _backward(ctx, dy, ds, _drstd):
    """dx = d(residual) = ds + d(norm)/ds (one gradient, in each input's dtype), dw."""
    s, weight, rstd = ctx.saved_tensors
    if dy is None:
        dy = torch.zeros_like(s)
    dx, dw = rms_norm_bwd(dy, s, weight, rstd, ds)
    x_dtype, r_dtype = ctx.dtypes
    return dx.to(x_dtype), dx.to(r_dtype), dw, None


add_rms_norm_fwd.register_autograd(_backward, setup_context=_setup)


def add_rms_norm_triton(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton (rms_norm(x + residual), x + residual) through torch.ops.normia.add_rms_norm_fwd."""
    y, s, _ = add_rms_norm_fwd(x, residual, weight, eps)
    return y, s


__all__ = ["add_rms_norm_fwd", "add_rms_norm_reference", "add_rms_norm_triton"]
