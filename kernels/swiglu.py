"""SwiGLU gate: silu(gate) * up, elementwise in fp32, output in gate's dtype.

Why a kernel: eager PyTorch reads gate twice and writes a silu temporary; this reads gate and up once and
writes once. The backward recomputes silu from the saved inputs instead of keeping the temporary (less
memory). Offsets are int64 so tensors past 2^31 elements work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._triton import LIMITS, tl, triton, warps


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    acc = torch.promote_types(gate.dtype, torch.float32)
    return (F.silu(gate.to(acc)) * up.to(acc)).to(gate.dtype)


@triton.jit
def _swiglu_fwd_kernel(G, U, Y, n_elements, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(DY, G, U, DG, DU, n_elements, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    silu = g * sig
    dg = dy * u * sig * (1.0 + g * (1.0 - sig))
    tl.store(DG + offs, dg.to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + offs, (dy * silu).to(DU.dtype.element_ty), mask=mask)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, LIMITS.elementwise_block),)


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        g, u = gate.contiguous(), up.contiguous()
        y = torch.empty(g.shape, dtype=gate.dtype, device=gate.device)
        n = g.numel()
        if n > 0:
            _swiglu_fwd_kernel[_grid(n)](g, u, y, n, BLOCK=LIMITS.elementwise_block, num_warps=warps(4))
        ctx.save_for_backward(g, u)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        g, u = ctx.saved_tensors
        dy = dy.contiguous()
        dg, du = torch.empty_like(g), torch.empty_like(u)
        n = g.numel()
        if n > 0:
            _swiglu_bwd_kernel[_grid(n)](
                dy, g, u, dg, du, n, BLOCK=LIMITS.elementwise_block, num_warps=warps(4)
            )
        return dg, du


def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return SwiGLUFunction.apply(gate, up)
