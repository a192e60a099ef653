"""Residual add fused with RMSNorm: (rms_norm(x + residual), x + residual) in one pass over memory.

Why: in a pre-norm transformer the residual stream is read, added to and normalised at every block; fusing
saves one full read and write of the activations. The kernels live in rms_norm.py (HAS_RESIDUAL / HAS_DS
flags).
"""

from __future__ import annotations

import torch

from .rms_norm import rms_norm_backward, rms_norm_forward, rms_norm_reference


def add_rms_norm_reference(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition: s = x + residual (torch's dtype promotion), then rms_norm(s); returns (normed, s)."""
    s = x + residual
    return rms_norm_reference(s, weight, eps), s


class AddRMSNormFunction(torch.autograd.Function):
    """Triton forward (writes s and y) and Triton backward (dx = d(residual) = ds + d(norm)/ds, dw)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float):
        y, s, rstd = rms_norm_forward(x, weight, eps, residual=residual)
        ctx.save_for_backward(s, weight, rstd)
        ctx.x_shape = x.shape
        ctx.dtypes = (x.dtype, residual.dtype)
        return y.view(x.shape), s.view(x.shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor | None, ds: torch.Tensor | None):
        s2, weight, rstd = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(s2)
        dx, dw = rms_norm_backward(dy, s2, weight, rstd, ds=ds)
        dx = dx.view(ctx.x_shape)  # d(sum)/dx = d(sum)/d(residual): one gradient, in each input's dtype
        x_dtype, r_dtype = ctx.dtypes
        return dx.to(x_dtype), dx.to(r_dtype), dw, None


def add_rms_norm_triton(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    return AddRMSNormFunction.apply(x, residual, weight, eps)


__all__ = ["AddRMSNormFunction", "add_rms_norm_reference", "add_rms_norm_triton"]
