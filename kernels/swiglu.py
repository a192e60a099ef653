"""SwiGLU gate: silu(gate) * up, elementwise in fp32, output in gate's dtype.

Why a kernel: eager PyTorch reads gate twice and writes a silu temporary; this reads gate and up once and
writes once. The backward recomputes silu from the saved inputs instead of keeping the temporary (less
memory). Offsets are int64 so tensors past 2^31 elements work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._ops import launch, on_device, op
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


def _fwd_fake(gate, up):
    return torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)


@op("swiglu_fwd", fake=_fwd_fake)
def swiglu_fwd(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, contiguous in gate's shape and dtype."""
    g, u = gate.contiguous(), up.contiguous()
    y = torch.empty(g.shape, dtype=gate.dtype, device=gate.device)
    n = g.numel()
    if n > 0:
        with on_device(gate):
            launch(_swiglu_fwd_kernel)[_grid(n)](
                g, u, y, n, BLOCK=LIMITS.elementwise_block, num_warps=warps(4)
            )
    return y


def _bwd_fake(dy, gate, up):
    return (
        torch.empty(gate.shape, dtype=gate.dtype, device=gate.device),
        torch.empty(up.shape, dtype=up.dtype, device=up.device),
    )


@op("swiglu_bwd", fake=_bwd_fake)
def swiglu_bwd(dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d gate, d up), contiguous; silu is recomputed from the inputs rather than saved."""
    g, u, dy = gate.contiguous(), up.contiguous(), dy.contiguous()
    dg = torch.empty(g.shape, dtype=g.dtype, device=g.device)
    du = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    n = g.numel()
    if n > 0:
        with on_device(gate):
            launch(_swiglu_bwd_kernel)[_grid(n)](
                dy, g, u, dg, du, n, BLOCK=LIMITS.elementwise_block, num_warps=warps(4)
            )
    return dg, du


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    gate, up = ctx.saved_tensors
    return swiglu_bwd(dy, gate, up)


swiglu_fwd.register_autograd(_backward, setup_context=_setup)


def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Triton silu(gate) * up (torch.ops.normia.swiglu_fwd, Triton backward)."""
    return swiglu_fwd(gate, up)
