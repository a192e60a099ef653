"""LayerNorm over the last dim: y = (x - mean) * rstd * w + b, statistics in fp32, output in x.dtype.

Same layout as rms_norm.py: one program per row forward (registers up to LIMITS.max_fused_row, block loops
beyond; the variance is taken around the mean in a second pass, never as E[x^2] - E[x]^2), and a persistent
backward with per-program fp32 partials for dw and db (deterministic, no atomics). int64 row offsets.

Range: as rms_norm.py. Rows held in registers (up to LIMITS.max_fused_row elements) and the reference divide a row
whose max |x| exceeds SCALE_SAFE_ABOVE by that maximum first, so any finite fp32/bf16 row normalises correctly (torch's
own layer_norm returns zeros once the variance overflows); longer rows need the variance times N below 3.4e38.
"""

from __future__ import annotations

import torch

from ._ops import launch, on_device, op, rows_of
from ._rows import as_rows
from ._triton import num_programs, row_settings, tl, triton
from .rms_norm import row_scale


def layer_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """torch's layer_norm in (at least) fp32, made scale-safe: a huge row is divided by its max |x| first."""
    acc = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(acc)
    b = bias.to(acc) if bias is not None else None
    scale = row_scale(xf)  # no host sync to pick a path: the formula below is exact for scale == 1 too
    xs = xf / scale
    xc = xs - xs.mean(-1, keepdim=True)
    y = xc * torch.rsqrt(xc.square().mean(-1, keepdim=True) + eps / scale / scale) * weight.to(acc)
    return (y + b if b is not None else y).to(x.dtype)


@triton.jit
def _layer_norm_fwd_kernel(
    X, W, B, Y, MEAN, RSTD,
    stride_x, stride_y, n_cols, eps,
    HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr, SINGLE_BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    X += row * stride_x
    Y += row * stride_y
    cols = tl.arange(0, BLOCK)
    if SINGLE_BLOCK:
        mask = cols < n_cols
        x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
        # scale-safe (module doc): the row is in registers, so its max costs no memory pass
        amax = tl.max(tl.abs(x), axis=0)
        scale = tl.where(amax > 1099511627776.0, amax, 1.0)  # 2^40 = SCALE_SAFE_ABOVE
        xs = x / scale
        mean_s = tl.sum(xs, axis=0) / n_cols
        xc = tl.where(mask, xs - mean_s, 0.0)
        rstd_s = tl.rsqrt(tl.sum(xc * xc, axis=0) / n_cols + eps / scale / scale)
        mean = mean_s * scale
        rstd = rstd_s / scale
        y = xc * rstd_s * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            y += tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + cols, y.to(Y.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            acc += tl.load(X + c, mask=c < n_cols, other=0.0).to(tl.float32)
        mean = tl.sum(acc, axis=0) / n_cols
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            xc = tl.where(mask, tl.load(X + c, mask=mask, other=0.0).to(tl.float32) - mean, 0.0)
            acc += xc * xc
        rstd = tl.rsqrt(tl.sum(acc, axis=0) / n_cols + eps)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            x = tl.load(X + c, mask=mask, other=0.0).to(tl.float32)
            y = (x - mean) * rstd * tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
            if HAS_BIAS:
                y += tl.load(B + c, mask=mask, other=0.0).to(tl.float32)
            tl.store(Y + c, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _layer_norm_bwd_kernel(
    DY, X, W, MEAN, RSTD, DX, DW_PART, DB_PART,
    stride_dy, stride_x, stride_dx, n_rows, n_cols,
    HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr, SINGLE_BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)
    DW_PART += pid.to(tl.int64) * n_cols
    DB_PART += pid.to(tl.int64) * n_cols
    if SINGLE_BLOCK:
        mask = cols < n_cols
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        dw = tl.zeros([BLOCK], dtype=tl.float32)
        db = tl.zeros([BLOCK], dtype=tl.float32)
        for row32 in range(pid, n_rows, n_prog):
            row = tl.cast(row32, tl.int64)
            x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
            mean = tl.load(MEAN + row)
            rstd = tl.load(RSTD + row)
            xhat = tl.where(mask, (x - mean) * rstd, 0.0)
            dyw = dy * w
            c1 = tl.sum(dyw * xhat, axis=0) / n_cols
            c2 = tl.sum(dyw, axis=0) / n_cols
            dx = rstd * (dyw - c2 - xhat * c1)
            tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
            dw += dy * xhat
            db += dy
        tl.store(DW_PART + cols, dw, mask=mask)
        if HAS_BIAS:
            tl.store(DB_PART + cols, db, mask=mask)
    else:  # DW_PART / DB_PART arrive zeroed; each program owns its row of partials
        for row32 in range(pid, n_rows, n_prog):
            row = tl.cast(row32, tl.int64)
            mean = tl.load(MEAN + row)
            rstd = tl.load(RSTD + row)
            acc1 = tl.zeros([BLOCK], dtype=tl.float32)
            acc2 = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                mask = c < n_cols
                x = tl.load(X + row * stride_x + c, mask=mask, other=0.0).to(tl.float32)
                dy = tl.load(DY + row * stride_dy + c, mask=mask, other=0.0).to(tl.float32)
                dyw = dy * tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
                acc1 += dyw * tl.where(mask, (x - mean) * rstd, 0.0)
                acc2 += dyw
            c1 = tl.sum(acc1, axis=0) / n_cols
            c2 = tl.sum(acc2, axis=0) / n_cols
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                mask = c < n_cols
                x = tl.load(X + row * stride_x + c, mask=mask, other=0.0).to(tl.float32)
                dy = tl.load(DY + row * stride_dy + c, mask=mask, other=0.0).to(tl.float32)
                w = tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
                xhat = tl.where(mask, (x - mean) * rstd, 0.0)
                dx = rstd * (dy * w - c2 - xhat * c1)
                tl.store(DX + row * stride_dx + c, dx.to(DX.dtype.element_ty), mask=mask)
                part = tl.load(DW_PART + c, mask=mask, other=0.0)  # this program's own row of partials
                tl.store(DW_PART + c, part + dy * xhat, mask=mask)
                if HAS_BIAS:
                    part_b = tl.load(DB_PART + c, mask=mask, other=0.0)
                    tl.store(DB_PART + c, part_b + dy, mask=mask)


def _fwd_fake(x, weight, bias, eps):
    rows = rows_of(x)
    stats = (x.new_empty(rows, dtype=torch.float32), x.new_empty(rows, dtype=torch.float32))
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device), *stats)


@op("layer_norm_fwd", fake=_fwd_fake)
def layer_norm_fwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd): y contiguous in x's shape and dtype, mean and rstd (rows,) fp32 for the backward."""
    x2 = as_rows(x)
    n_rows, n_cols = x2.shape
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    y2 = y.view(n_rows, n_cols)
    mean = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    block, single, num_warps = row_settings(n_cols)
    if n_rows > 0:
        with on_device(x):
            launch(_layer_norm_fwd_kernel)[(n_rows,)](
                x2, weight, bias if bias is not None else weight, y2, mean, rstd,
                x2.stride(0), y2.stride(0), n_cols, eps,
                HAS_BIAS=bias is not None, BLOCK=block, SINGLE_BLOCK=single, num_warps=num_warps,
            )  # fmt: skip
    return y, mean, rstd


def _bwd_fake(dy, x, weight, bias, mean, rstd):
    db = torch.empty_like(bias) if bias is not None else weight.new_empty(0)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device), torch.empty_like(weight), db


@op("layer_norm_bwd", fake=_bwd_fake)
def layer_norm_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dw, db); db is empty (0,) without a bias (bias is passed only for its presence and dtype)."""
    x2 = as_rows(x)
    dy2 = as_rows(dy)
    n_rows, n_cols = x2.shape
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    dx2 = dx.view(n_rows, n_cols)
    has_bias = bias is not None
    n_prog = num_programs(x2.device, n_rows, n_cols)
    dw_part = torch.zeros((n_prog, n_cols), dtype=torch.float32, device=x2.device)
    db_part = torch.zeros((n_prog, n_cols), dtype=torch.float32, device=x2.device) if has_bias else dw_part
    block, single, num_warps = row_settings(n_cols)
    if n_rows > 0:
        with on_device(x):
            launch(_layer_norm_bwd_kernel)[(n_prog,)](
                dy2, x2, weight, mean, rstd, dx2, dw_part, db_part,
                dy2.stride(0), x2.stride(0), dx2.stride(0), n_rows, n_cols,
                HAS_BIAS=has_bias, BLOCK=block, SINGLE_BLOCK=single, num_warps=num_warps,
            )  # fmt: skip
    dw = dw_part.sum(0).to(weight.dtype)
    db = db_part.sum(0).to(bias.dtype) if has_bias else weight.new_empty(0)
    return dx, dw, db


def _setup(ctx, inputs, output) -> None:
    x, weight, bias, _ = inputs
    ctx.save_for_backward(x, weight, bias, output[1], output[2])


def _backward(ctx, dy, _dmean, _drstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    dx, dw, db = layer_norm_bwd(dy, x, weight, bias, mean, rstd)
    return dx, dw, db if bias is not None else None, None


layer_norm_fwd.register_autograd(_backward, setup_context=_setup)


def layer_norm_triton(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Triton LayerNorm (torch.ops.normia.layer_norm_fwd, Triton backward for dx, dw, db)."""
    return layer_norm_fwd(x, weight, bias, eps)[0]
