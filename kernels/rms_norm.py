"""RMSNorm: y = x * rsqrt(mean(x^2) + eps) * w, in fp32, cast back to x.dtype.

Forward: one program per row; rows up to LIMITS.max_fused_row elements stay in registers, longer rows loop
over blocks. Backward: a persistent kernel (a few programs per SM) that writes dx and keeps a per-program
fp32 partial of dw, summed afterwards; no atomics, so results are deterministic. The kernels also serve
add_rms_norm (HAS_RESIDUAL: s = x + residual is stored and normalised; DS: the gradient arriving on s is
added to dx). Row offsets are int64 so tensors beyond 2^31 elements address correctly.

Range: x^2 overflows fp32 from |x| ~ 1.8e19, and an overflowed mean square would turn the row into zeros (as in torch).
Rows held in registers (up to LIMITS.max_fused_row elements, every LLM width) and the reference are scale-safe: a row
whose largest |x| exceeds SCALE_SAFE_ABOVE is divided by that maximum before squaring, which costs no memory pass, so
any finite fp32/bf16 row normalises correctly. Longer rows (the block loop) need sum(x^2) < 3.4e38, i.e. |x| below
about 1.8e19 / sqrt(N). The backward needs rstd to stay a normal float: max |x| below about 1e37.
"""

from __future__ import annotations

import torch

from ._ops import launch, on_device, op, rows_of
from ._rows import as_rows
from ._triton import num_programs, row_settings, tl, triton

SCALE_SAFE_ABOVE = 2.0**40  # rows with a larger max |x| are divided by it before squaring (module doc)


def row_scale(xf: torch.Tensor) -> torch.Tensor:
    """Per-row divisor (..., 1): max |x| where it exceeds SCALE_SAFE_ABOVE, else exactly 1 (no change to the math).

    Detached: the normalised output does not depend on the divisor (the eps term is divided by its square too).
    """
    amax = xf.detach().abs().amax(-1, keepdim=True)
    return torch.where(amax > SCALE_SAFE_ABOVE, amax, torch.ones_like(amax))


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The definition: x * rsqrt(mean(x^2) + eps) * w, computed in (at least) fp32, cast back to x.dtype.

    Scale-safe: huge rows are divided by their max |x| first, so x^2 never overflows for a finite x.
    """
    acc = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(acc)
    scale = row_scale(xf)
    xs = xf / scale
    y = xs * torch.rsqrt(xs.pow(2).mean(-1, keepdim=True) + eps / scale / scale) * weight.to(acc)
    return y.to(x.dtype)


@triton.jit
def _rms_norm_fwd_kernel(
    X, R, W, Y, S, RSTD,
    stride_x, stride_r, stride_y, stride_s,
    n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr, SINGLE_BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    X += row * stride_x
    Y += row * stride_y
    if HAS_RESIDUAL:
        R += row * stride_r
        S += row * stride_s
    cols = tl.arange(0, BLOCK)
    if SINGLE_BLOCK:
        mask = cols < n_cols
        x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            r = tl.load(R + cols, mask=mask, other=0.0).to(tl.float32)
            s = (x + r).to(S.dtype.element_ty)
            tl.store(S + cols, s, mask=mask)
            x = s.to(tl.float32)
        # scale-safe (module doc): the row is in registers, so its max costs no memory pass
        amax = tl.max(tl.abs(x), axis=0)
        scale = tl.where(amax > 1099511627776.0, amax, 1.0)  # 2^40 = SCALE_SAFE_ABOVE
        xs = x / scale
        rstd_s = tl.rsqrt(tl.sum(xs * xs, axis=0) / n_cols + eps / scale / scale)
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + cols, (xs * rstd_s * w).to(Y.dtype.element_ty), mask=mask)
        rstd = rstd_s / scale
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            x = tl.load(X + c, mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:
                r = tl.load(R + c, mask=mask, other=0.0).to(tl.float32)
                s = (x + r).to(S.dtype.element_ty)
                tl.store(S + c, s, mask=mask)
                x = s.to(tl.float32)
            acc += x * x
        rstd = tl.rsqrt(tl.sum(acc, axis=0) / n_cols + eps)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            x = tl.load(X + c, mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:  # recompute s rather than re-read it: same bits, no cross-thread dependency
                r = tl.load(R + c, mask=mask, other=0.0).to(tl.float32)
                x = (x + r).to(S.dtype.element_ty).to(tl.float32)
            w = tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
            tl.store(Y + c, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    DY, X, W, RSTD, DS, DX, DW_PART,
    stride_dy, stride_x, stride_ds, stride_dx,
    n_rows, n_cols,
    HAS_DS: tl.constexpr, BLOCK: tl.constexpr, SINGLE_BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)
    DW_PART += pid.to(tl.int64) * n_cols
    if SINGLE_BLOCK:
        mask = cols < n_cols
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        dw = tl.zeros([BLOCK], dtype=tl.float32)
        for row32 in range(pid, n_rows, n_prog):
            row = tl.cast(row32, tl.int64)
            x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
            rstd = tl.load(RSTD + row)
            xhat = x * rstd
            dyw = dy * w
            c = tl.sum(dyw * xhat, axis=0) / n_cols
            dx = rstd * (dyw - xhat * c)
            if HAS_DS:
                dx += tl.load(DS + row * stride_ds + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
            dw += dy * xhat
        tl.store(DW_PART + cols, dw, mask=mask)
    else:  # DW_PART arrives zeroed; each program owns its row of partials
        for row32 in range(pid, n_rows, n_prog):
            row = tl.cast(row32, tl.int64)
            rstd = tl.load(RSTD + row)
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                mask = c < n_cols
                x = tl.load(X + row * stride_x + c, mask=mask, other=0.0).to(tl.float32)
                dy = tl.load(DY + row * stride_dy + c, mask=mask, other=0.0).to(tl.float32)
                w = tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
                acc += dy * w * x
            dot = tl.sum(acc, axis=0) * rstd / n_cols
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                mask = c < n_cols
                x = tl.load(X + row * stride_x + c, mask=mask, other=0.0).to(tl.float32)
                dy = tl.load(DY + row * stride_dy + c, mask=mask, other=0.0).to(tl.float32)
                w = tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
                xhat = x * rstd
                dx = rstd * (dy * w - xhat * dot)
                if HAS_DS:
                    dx += tl.load(DS + row * stride_ds + c, mask=mask, other=0.0).to(tl.float32)
                tl.store(DX + row * stride_dx + c, dx.to(DX.dtype.element_ty), mask=mask)
                part = tl.load(DW_PART + c, mask=mask, other=0.0)  # this program's own row of partials
                tl.store(DW_PART + c, part + dy * xhat, mask=mask)


def rms_norm_forward(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Launch the forward. Returns (y, s or None, rstd): y and s contiguous in x's shape, rstd (rows,) fp32.

    With a residual, s = x + residual and y take torch's promoted dtype of the two (a bf16 block output added to
    an fp32 residual stream under autocast gives fp32, as `x + residual` does); the kernel reads each input in its
    own dtype, so no cast pass is made.
    """
    x2 = as_rows(x)
    n_rows, n_cols = x2.shape
    out_dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    y2 = y.view(n_rows, n_cols)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    r2 = s = s2 = None
    if residual is not None:
        r2 = as_rows(residual)
        s = torch.empty(x.shape, dtype=out_dtype, device=x.device)
        s2 = s.view(n_rows, n_cols)
    block, single, num_warps = row_settings(n_cols)
    if n_rows > 0:
        launch(_rms_norm_fwd_kernel)[(n_rows,)](
            x2, r2 if r2 is not None else x2, weight, y2, s2 if s2 is not None else y2, rstd,
            x2.stride(0), r2.stride(0) if r2 is not None else 0, y2.stride(0), s2.stride(0) if s2 is not None else 0,
            n_cols, eps,
            HAS_RESIDUAL=residual is not None, BLOCK=block, SINGLE_BLOCK=single, num_warps=num_warps,
        )  # fmt: skip
    return y, s, rstd


def rms_norm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    ds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """dx (contiguous, x's shape and dtype) and dw (weight's dtype) from the saved input x and rstd."""
    x2 = as_rows(x)
    dy2 = as_rows(dy)
    ds2 = as_rows(ds) if ds is not None else None
    n_rows, n_cols = x2.shape
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    dx2 = dx.view(n_rows, n_cols)
    if n_rows == 0:
        return dx, torch.zeros_like(weight)
    n_prog = num_programs(x2.device, n_rows, n_cols)
    dw_part = torch.zeros((n_prog, n_cols), dtype=torch.float32, device=x2.device)
    block, single, num_warps = row_settings(n_cols)
    launch(_rms_norm_bwd_kernel)[(n_prog,)](
        dy2, x2, weight, rstd, ds2 if ds2 is not None else dy2, dx2, dw_part,
        dy2.stride(0), x2.stride(0), ds2.stride(0) if ds2 is not None else 0, dx2.stride(0),
        n_rows, n_cols,
        HAS_DS=ds is not None, BLOCK=block, SINGLE_BLOCK=single, num_warps=num_warps,
    )  # fmt: skip
    return dx, dw_part.sum(0).to(weight.dtype)


def _fwd_fake(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device), x.new_empty(rows_of(x), dtype=torch.float32)


@op("rms_norm_fwd", fake=_fwd_fake)
def rms_norm_fwd(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): y = rms_norm(x) contiguous in x's shape and dtype, rstd (rows,) fp32 for the backward."""
    with on_device(x):
        y, _, rstd = rms_norm_forward(x, weight, eps)
    return y, rstd


def _bwd_fake(dy, x, weight, rstd, ds):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device), torch.empty_like(weight)


@op("rms_norm_bwd", fake=_bwd_fake)
def rms_norm_bwd(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor, ds: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dw) of rms_norm at x; ds, the gradient arriving on add_rms_norm's sum, is added to dx."""
    with on_device(x):
        return rms_norm_backward(dy, x, weight, rstd, ds)


def _setup(ctx, inputs, output) -> None:
    x, weight, _ = inputs
    ctx.save_for_backward(x, weight, output[1])


def _backward(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_bwd(dy, x, weight, rstd, None)
    return dx, dw, None


rms_norm_fwd.register_autograd(_backward, setup_context=_setup)


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Triton RMSNorm (torch.ops.normia.rms_norm_fwd, Triton backward for dx and dw)."""
    return rms_norm_fwd(x, weight, eps)[0]
