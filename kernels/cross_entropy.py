"""Cross-entropy over the last dim with ignore_index, label smoothing and reductions none / sum / mean.

Matches torch.nn.functional.cross_entropy for (N, V) logits (classes on the last dim for any leading
shape), including its edge cases: ignored rows have loss 0 and gradient 0, and "mean" divides by the
number of non-ignored rows, so an all-ignored batch gives nan (0/0) with a zero gradient, as torch does.

One program per row streams the vocabulary in blocks with an online log-sum-exp (never more than one block
in registers, so any vocabulary size works). The forward saves only two floats a row (max and log-sum); the
backward kernel reads the logits once more and writes softmax - onehot, scaled per row by the incoming
gradient, which is what makes reduction="none" (a per-row grad_output) exact. The same kernel can
overwrite a logits chunk with its gradient in place, which is what fused_linear_cross_entropy uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._ops import launch, on_device, op, rows_of
from ._rows import as_rows
from ._triton import LIMITS, next_pow2, tl, triton, warps


def cross_entropy_reference(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """F.cross_entropy in (at least) fp32 with classes on the last dim; result in logits.dtype."""
    acc = torch.promote_types(logits.dtype, torch.float32)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).to(acc),
        target.reshape(-1),
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    if reduction == "none":
        loss = loss.view(target.shape)
    return loss.to(logits.dtype)


@triton.jit
def _cross_entropy_kernel(
    LOGITS, TARGET, LOSS, STATS, GRAD, SCALE,
    stride_l, stride_g, n_cols, ignore_index, smoothing,
    HAS_STATS: tl.constexpr, WRITE_LOSS: tl.constexpr, WRITE_GRAD: tl.constexpr,
    SCALE_PER_ROW: tl.constexpr, HAS_SMOOTHING: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # STATS holds (max, log(sum(exp(x - max)))) per row, not their sum (the lse): softmax = exp((x - max) - logd)
    # keeps full fp32 accuracy when |logits| is large, where x - lse would cancel catastrophically.
    row = tl.program_id(0).to(tl.int64)
    LOGITS += row * stride_l
    GRAD += row * stride_g
    cols = tl.arange(0, BLOCK)
    t = tl.load(TARGET + row).to(tl.int64)
    if t == ignore_index:
        if WRITE_LOSS:
            tl.store(LOSS + row, 0.0)
            tl.store(STATS + 2 * row, 0.0)
            tl.store(STATS + 2 * row + 1, 0.0)
        if WRITE_GRAD:
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                tl.store(GRAD + c, tl.zeros([BLOCK], dtype=GRAD.dtype.element_ty), mask=c < n_cols)
        return
    if HAS_STATS:
        m = tl.load(STATS + 2 * row)
        logd = tl.load(STATS + 2 * row + 1)
    else:
        m = float("-inf")
        d = 0.0
        sum_x = 0.0
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            x = tl.load(LOGITS + c, mask=mask, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m = m_new
            if HAS_SMOOTHING:
                sum_x += tl.sum(tl.where(mask, x, 0.0), axis=0)
        logd = tl.log(d)
        if WRITE_LOSS:
            x_t = tl.load(LOGITS + t).to(tl.float32)
            loss = (m - x_t) + logd
            if HAS_SMOOTHING:
                loss = (1.0 - smoothing) * (m - x_t) + smoothing * (m - sum_x / n_cols) + logd
            tl.store(LOSS + row, loss)
            tl.store(STATS + 2 * row, m)
            tl.store(STATS + 2 * row + 1, logd)
    if WRITE_GRAD:
        if SCALE_PER_ROW:
            scale = tl.load(SCALE + row).to(tl.float32)
        else:
            scale = tl.load(SCALE).to(tl.float32)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c < n_cols
            x = tl.load(LOGITS + c, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp((x - m) - logd) - tl.where(c == t, 1.0 - smoothing, 0.0)
            if HAS_SMOOTHING:
                g -= smoothing / n_cols
            tl.store(GRAD + c, (g * scale).to(GRAD.dtype.element_ty), mask=mask)


def cross_entropy_rows(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    label_smoothing: float = 0.0,
    *,
    loss: torch.Tensor | None = None,
    stats: torch.Tensor | None = None,
    grad: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    stats_known: bool = False,
) -> None:
    """Launch on (rows, V) logits with unit column stride and a contiguous 1-D target.

    loss (fp32, one per row) and stats ((rows, 2) fp32: max, log-sum) are written when `loss` is given; `grad`
    (may be `logits` itself) receives (softmax - smoothed onehot) * scale, `scale` being one value or one per
    row. stats_known: read stats instead of the first pass over the logits.
    """
    n_rows, n_cols = logits.shape
    if loss is not None and stats is None:
        raise ValueError(
            "cross_entropy_rows: pass a (rows, 2) stats buffer with loss (the kernel writes both)"
        )
    if n_rows == 0:
        return
    block = min(next_pow2(n_cols), LIMITS.ce_block)
    write_loss = loss is not None
    write_grad = grad is not None
    dummy = logits
    launch(_cross_entropy_kernel)[(n_rows,)](
        logits, target,
        loss if write_loss else dummy, stats if stats is not None else dummy,
        grad if write_grad else dummy, scale if scale is not None else dummy,
        logits.stride(0), grad.stride(0) if write_grad else 0, n_cols, ignore_index, float(label_smoothing),
        HAS_STATS=stats_known, WRITE_LOSS=write_loss, WRITE_GRAD=write_grad,
        SCALE_PER_ROW=scale is not None and scale.numel() > 1,
        HAS_SMOOTHING=label_smoothing > 0.0, BLOCK=block, num_warps=warps(8 if block >= 2048 else 4),
    )  # fmt: skip


def reduce_rows(loss_rows: torch.Tensor, n_valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """none / sum / mean of per-row fp32 losses; mean divides by the non-ignored count (0/0 -> nan, as torch)."""
    if reduction == "none":
        return loss_rows
    if reduction == "sum":
        return loss_rows.sum()
    return loss_rows.sum() / n_valid


def row_grad_scale(
    grad_out: torch.Tensor,
    n_valid: torch.Tensor,
    reduction: str,
    n_rows: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The factor each row's (softmax - onehot) is multiplied by, as a 1-element or per-row tensor."""
    if reduction == "none":
        return grad_out.reshape(n_rows).to(dtype).contiguous()
    if reduction == "sum":
        return grad_out.reshape(1).to(dtype)
    return (grad_out.to(dtype) / n_valid).reshape(1)


def _fwd_fake(logits, target, ignore_index, label_smoothing):
    rows = rows_of(logits)
    return logits.new_empty(rows, dtype=torch.float32), logits.new_empty((rows, 2), dtype=torch.float32)


@op("cross_entropy_fwd", fake=_fwd_fake)
def cross_entropy_fwd(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per row, stats): (rows,) fp32 losses (0 for ignored rows) and the (rows, 2) fp32 stats of the backward."""
    l2 = as_rows(logits)
    t1 = target.reshape(-1).contiguous()
    n_rows = l2.shape[0]
    loss_rows = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    stats = torch.empty((n_rows, 2), dtype=torch.float32, device=logits.device)
    with on_device(logits):
        cross_entropy_rows(l2, t1, ignore_index, label_smoothing, loss=loss_rows, stats=stats)
    return loss_rows, stats


def _bwd_fake(grad_rows, logits, target, stats, ignore_index, label_smoothing):
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


@op("cross_entropy_bwd", fake=_bwd_fake)
def cross_entropy_bwd(
    grad_rows: torch.Tensor,
    logits: torch.Tensor,
    target: torch.Tensor,
    stats: torch.Tensor,
    ignore_index: int,
    label_smoothing: float,
) -> torch.Tensor:
    """dlogits (contiguous, logits' shape and dtype) = (softmax - smoothed onehot) * grad_rows, per row."""
    l2 = as_rows(logits)
    t1 = target.reshape(-1).contiguous()
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    scale = grad_rows.reshape(-1).to(torch.float32).contiguous()
    with on_device(logits):
        cross_entropy_rows(
            l2, t1, ignore_index, label_smoothing, stats=stats, grad=grad.view(l2.shape), scale=scale,
            stats_known=True,
        )  # fmt: skip
    return grad


def _setup(ctx, inputs, output) -> None:
    logits, target, ignore_index, label_smoothing = inputs
    ctx.save_for_backward(logits, target, output[1])
    ctx.args = (ignore_index, label_smoothing)


def _backward(ctx, grad_rows, _dstats):
    logits, target, stats = ctx.saved_tensors
    return cross_entropy_bwd(grad_rows, logits, target, stats, *ctx.args), None, None, None


cross_entropy_fwd.register_autograd(_backward, setup_context=_setup)


def cross_entropy_triton(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Triton cross-entropy: per-row losses from torch.ops.normia.cross_entropy_fwd, reduced here in fp32.

    The reduction's own gradient (1 or 1/n_valid per row) reaches the backward kernel as a per-row scale.
    """
    loss_rows, _ = cross_entropy_fwd(logits, target, ignore_index, float(label_smoothing))
    n_valid = (target != ignore_index).sum()
    out = reduce_rows(loss_rows, n_valid, reduction)
    if reduction == "none":
        out = out.view(target.shape)
    return out.to(logits.dtype)
