"""Rotary position embedding, rotate-half convention (LLaMA / Hugging Face): y = x * cos + rotate_half(x) * sin.

x is (B, H, T, D) with any strides (a (B, T, H, D) tensor transposed to (B, H, T, D) is read in place);
cos and sin are (T, D). Each program rotates a (BLOCK_T, D/2) tile of one (batch, head) pair, so a cos/sin
tile is loaded once for BLOCK_T positions. The backward is the same kernel with the transposed rotation.
cos and sin are treated as constants (tables), as in every LLaMA-style model: no gradient flows to them.
"""

from __future__ import annotations

import torch

from ._ops import launch, on_device, op
from ._triton import next_pow2, tl, triton, warps


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    acc = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(acc)
    return (xf * cos.to(acc) + rotate_half(xf) * sin.to(acc)).to(x.dtype)


@triton.jit
def _rope_kernel(
    X, COS, SIN, Y,
    sx_b, sx_h, sx_t, sy_b, sy_h, sy_t, s_cos,
    n_heads, seq_len, half,
    BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0).to(tl.int64)
    b = bh // n_heads
    h = bh % n_heads
    t = tl.program_id(1).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    d = tl.arange(0, BLOCK_D)
    mask = (t[:, None] < seq_len) & (d[None, :] < half)
    x_off = b * sx_b + h * sx_h + t[:, None] * sx_t + d[None, :]
    y_off = b * sy_b + h * sy_h + t[:, None] * sy_t + d[None, :]
    cs_off = t[:, None] * s_cos + d[None, :]
    x1 = tl.load(X + x_off, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(X + x_off + half, mask=mask, other=0.0).to(tl.float32)
    c1 = tl.load(COS + cs_off, mask=mask, other=0.0).to(tl.float32)
    c2 = tl.load(COS + cs_off + half, mask=mask, other=0.0).to(tl.float32)
    s1 = tl.load(SIN + cs_off, mask=mask, other=0.0).to(tl.float32)
    s2 = tl.load(SIN + cs_off + half, mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:  # transpose of [[c1, -s1], [s2, c2]]
        y1 = x1 * c1 + x2 * s2
        y2 = x2 * c2 - x1 * s1
    else:
        y1 = x1 * c1 - x2 * s1
        y2 = x2 * c2 + x1 * s2
    tl.store(Y + y_off, y1.to(Y.dtype.element_ty), mask=mask)
    tl.store(Y + y_off + half, y2.to(Y.dtype.element_ty), mask=mask)


def _rope_fake(x, cos, sin, backward):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@op("rope", fake=_rope_fake)
def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool) -> torch.Tensor:
    """x (B, H, T, D) rotated by the (T, D) tables (their transpose when backward), contiguous in x's dtype."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    cos, sin = cos.contiguous(), sin.contiguous()
    bsz, n_heads, seq_len, dim = x.shape
    y = torch.empty((bsz, n_heads, seq_len, dim), dtype=x.dtype, device=x.device)
    half = dim // 2
    block_d = next_pow2(half)
    block_t = max(1, min(next_pow2(seq_len), 2048 // block_d))
    grid = (bsz * n_heads, triton.cdiv(seq_len, block_t))
    if y.numel() > 0:
        with on_device(x):
            launch(_rope_kernel)[grid](
                x, cos, sin, y,
                x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1), y.stride(2), cos.stride(0),
                n_heads, seq_len, half,
                BACKWARD=backward, BLOCK_T=block_t, BLOCK_D=block_d, num_warps=warps(4),
            )  # fmt: skip
    return y


def _setup(ctx, inputs, output) -> None:
    _, cos, sin, backward = inputs
    ctx.save_for_backward(cos, sin)
    ctx.backward = backward


def _backward(ctx, dy):
    cos, sin = ctx.saved_tensors
    return rope(dy, cos, sin, not ctx.backward), None, None, None


rope.register_autograd(_backward, setup_context=_setup)


def apply_rope_triton(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Triton rotate-half RoPE (torch.ops.normia.rope); cos/sin are constant tables (no gradient)."""
    return rope(x, cos, sin, False)
