"""Linear layer + cross-entropy without ever materialising the full (tokens, vocab) logits.

Why: at vocab 128k the logits and their gradient dominate an LLM's activation memory. Tokens are processed
in chunks (see chunk_rows: a chunk of logits is a small multiple of the hidden states' size): for each
chunk the logits are computed by a matmul, the cross-entropy kernel writes the loss and overwrites the
logits with their gradient in place, and two more matmuls accumulate d(hidden) and d(weight) (and
d(bias)).

For reduction "mean" / "sum" the incoming gradient is a scalar, so the gradients are computed during the
forward and only scaled in the backward: 3 matmuls in all, like the unfused version. For reduction "none"
each row has its own incoming gradient, which is unknown at forward time: the backward recomputes the
chunks (4 matmuls) rather than return gradients that are wrong, a known failure of other libraries.

The same chunked autograd.Function serves both paths; only the per-chunk cross-entropy differs: the Triton
kernel on GPUs (or under the interpreter), a PyTorch version on CPU. Gradient accumulators use the
weight's dtype (fp32 weights accumulate in fp32), and the per-row math is always fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._ops import on_device, op
from ._triton import LIMITS, next_pow2, triton
from .cross_entropy import cross_entropy_reference, cross_entropy_rows, reduce_rows, row_grad_scale


def fused_linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """The unfused definition (materialises all logits): what the fused versions must equal."""
    return cross_entropy_reference(F.linear(hidden, weight, bias), target, ignore_index, reduction)


def chunk_rows(n_rows: int, hidden_size: int, vocab_size: int, device_type: str = "cpu") -> int:
    """Tokens per chunk (a power of two). Base: chunk logits about the size of all hidden states (Liger's rule).

    GPUs: 4x the base. Each chunk's d(weight) matmul re-reads and re-writes the whole (vocab, hidden)
    accumulator, so fewer chunks cost less time and more memory. Measured on an H200 (bf16, 8192 tokens x 4096
    hidden x 128256 vocab, benchmarks/gpu/flce_chunks.py, 2026-11-30), fwd+bwd: 256 tokens 56.6 ms, 512 48.1,
    1024 43.9, 2048 41.7, 4096 42.7; peak memory 381, 507, 757, 1258 MB from 512 to 4096 tokens. Against the
    unfused linear + cross_entropy (41.0 ms, 6.0 GB in the kernel benchmark) the targets are <= 1.1x time and
    <= 1/4 memory: 1024 tokens (4x the base there) meets both (~1.07x, ~0.22), 2048 misses the memory one.
    CPUs: at least LIMITS.flce_cpu_chunk_elements logits (128 MB in fp32): CPU matmuls with a few dozen rows
    run at a fraction of their speed (32-token chunks made the step 2-4x slower than unfused at 1k tokens).
    """
    if LIMITS.flce_chunk_rows:
        return LIMITS.flce_chunk_rows
    factor = triton.cdiv(vocab_size, hidden_size)
    rows = next_pow2(triton.cdiv(max(n_rows, 1), factor))
    if device_type == "cuda":
        rows *= 4
    else:
        floor = max(1, LIMITS.flce_cpu_chunk_elements // max(vocab_size, 1))
        rows = max(rows, 1 << (floor.bit_length() - 1))
    return max(1, min(rows, next_pow2(max(n_rows, 1)) // 2))  # at least two chunks: never the full logits


def _chunk_ce_torch(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    loss: torch.Tensor | None,
    scale: torch.Tensor | None,
) -> None:
    """PyTorch twin of the Triton kernel call: write per-row losses and/or overwrite logits with the gradient."""
    lf = logits.to(torch.promote_types(logits.dtype, torch.float32))
    # as the kernel: softmax = exp(shifted - logd), which avoids the cancellation of x - lse at large logits
    shifted = lf - lf.amax(dim=-1, keepdim=True)
    logd = torch.logsumexp(shifted, dim=-1)
    valid = target != ignore_index
    safe_t = torch.where(valid, target, torch.zeros_like(target)).unsqueeze(1)
    if loss is not None:
        loss.copy_(torch.where(valid, logd - shifted.gather(1, safe_t).squeeze(1), torch.zeros_like(logd)))
    if scale is not None:
        grad = shifted.sub_(logd.unsqueeze(1)).exp_()
        grad.scatter_add_(1, safe_t, torch.full_like(safe_t, -1.0, dtype=grad.dtype))
        row_scale = scale.expand(logd.shape[0]) if scale.numel() == 1 else scale
        grad.mul_(torch.where(valid, row_scale, torch.zeros_like(row_scale)).unsqueeze(1))
        logits.copy_(grad)


def _chunk_fake(logits, target, loss, scale, ignore_index) -> None:
    return None


@op("fused_linear_cross_entropy_chunk", fake=_chunk_fake, mutates_args=("logits", "loss"))
def chunk_ce_(
    logits: torch.Tensor,
    target: torch.Tensor,
    loss: torch.Tensor | None,
    scale: torch.Tensor | None,
    ignore_index: int,
) -> None:
    """One chunk through the Triton kernel: write its per-row losses into `loss` (when given) and, when `scale` is
    given, overwrite `logits` with their gradient (times scale, one value or one per row)."""
    stats = (
        torch.empty((loss.shape[0], 2), dtype=torch.float32, device=loss.device) if loss is not None else None
    )
    grad = logits if scale is not None else None
    with on_device(logits):
        cross_entropy_rows(logits, target, ignore_index, loss=loss, stats=stats, grad=grad, scale=scale)


def _chunk_ce(logits, target, ignore_index, loss, scale, use_triton: bool) -> None:
    if use_triton:
        chunk_ce_(logits, target, loss, scale, ignore_index)
    else:
        _chunk_ce_torch(logits, target, ignore_index, loss, scale)


def _chunk_backward(logits, h_c, weight, grad_h, grad_w, grad_b, start: int, end: int) -> None:
    """Given a chunk's dlogits (in `logits`), accumulate the gradients of hidden, weight and bias."""
    if grad_h is not None:
        torch.mm(logits, weight, out=grad_h[start:end])
    if grad_w is not None:
        grad_w.addmm_(logits.t(), h_c)
    if grad_b is not None:
        grad_b.add_(logits.sum(0, dtype=grad_b.dtype))


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, bias, ignore_index: int, reduction: str, use_triton: bool,
                compute_dtype: torch.dtype | None = None):  # fmt: skip
        ctx.in_dtypes = (hidden.dtype, weight.dtype)
        # autocast: cast explicitly once, then run with autocast off inside (see autocast_dtype)
        if compute_dtype is not None:
            hidden, weight = hidden.to(compute_dtype), weight.to(compute_dtype)
            bias = bias.to(compute_dtype) if bias is not None else None
        with torch.autocast(hidden.device.type, enabled=False):
            loss = FusedLinearCrossEntropyFunction._forward(
                ctx, hidden, weight, target, bias, ignore_index, reduction, use_triton
            )
        return loss.to(ctx.in_dtypes[0])  # fp32 under autocast, as autocast's cross_entropy

    @staticmethod
    def _forward(ctx, hidden, weight, target, bias, ignore_index: int, reduction: str, use_triton: bool):
        h2 = hidden.reshape(-1, hidden.shape[-1])
        t1 = target.reshape(-1).contiguous()
        n_rows = h2.shape[0]
        n_valid = (t1 != ignore_index).sum()
        # per-row math in fp32 (fp64 for fp64 inputs, so the reference checks are exact)
        acc = torch.promote_types(hidden.dtype, torch.float32)
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3]
        eager = (need_h or need_w or need_b) and reduction != "none"
        grads = _alloc_grads(h2, weight, bias, need_h, need_w, need_b) if eager else (None, None, None)
        scale = None
        if eager:
            ones = torch.ones(1, dtype=acc, device=hidden.device)
            scale = row_grad_scale(ones, n_valid, reduction, n_rows, acc)
        loss_rows = torch.empty(n_rows, dtype=acc, device=hidden.device)
        step = chunk_rows(n_rows, h2.shape[1], weight.shape[0], hidden.device.type)
        for start in range(0, n_rows, step):
            end = min(start + step, n_rows)
            h_c = h2[start:end]
            logits = F.linear(h_c, weight, bias)
            _chunk_ce(logits, t1[start:end], ignore_index, loss_rows[start:end], scale, use_triton)
            if eager:
                _chunk_backward(logits, h_c, weight, *grads, start, end)
            del logits  # free this chunk before the next one is allocated
        if eager:
            ctx.save_for_backward(*grads)
        else:
            ctx.save_for_backward(h2, weight, t1, bias, n_valid)
        ctx.eager = eager
        ctx.consumed = False
        ctx.meta = (ignore_index, reduction, use_triton, hidden.shape, step,
                    bias.dtype if bias is not None else None)  # fmt: skip
        out = reduce_rows(loss_rows, n_valid, reduction)
        if reduction == "none":
            out = out.view(target.shape)
        return out.to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        h_dtype, w_dtype = ctx.in_dtypes
        grad_h, grad_w, _, grad_b, *_ = FusedLinearCrossEntropyFunction._backward(ctx, grad_out)
        grad_h = grad_h.to(h_dtype) if grad_h is not None else None
        grad_w = grad_w.to(w_dtype) if grad_w is not None else None
        return grad_h, grad_w, None, grad_b, None, None, None, None

    @staticmethod
    def _backward(ctx, grad_out: torch.Tensor):
        ignore_index, reduction, use_triton, h_shape, step, b_dtype = ctx.meta
        if ctx.eager:
            if ctx.consumed:  # the gradients below are scaled in place to save a (vocab, hidden) copy
                raise RuntimeError(
                    "fused_linear_cross_entropy: backward ran twice (retain_graph=True); "
                    "recompute the loss for each backward"
                )
            ctx.consumed = True
            grad_h, grad_w, grad_b = ctx.saved_tensors
            g = grad_out.to(torch.promote_types(grad_out.dtype, torch.float32))
            grad_h = grad_h.mul_(g).view(h_shape) if grad_h is not None else None
            grad_w = grad_w.mul_(g) if grad_w is not None else None
            grad_b = grad_b.mul_(g).to(b_dtype) if grad_b is not None else None
            return grad_h, grad_w, None, grad_b, None, None, None
        h2, weight, t1, bias, n_valid = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3]
        grads = _alloc_grads(h2, weight, bias, need_h, need_w, need_b)
        acc = torch.promote_types(h2.dtype, torch.float32)
        scale = row_grad_scale(grad_out, n_valid, reduction, h2.shape[0], acc)
        for start in range(0, h2.shape[0], step):
            end = min(start + step, h2.shape[0])
            h_c = h2[start:end]
            logits = F.linear(h_c, weight, bias)
            _chunk_ce(logits, t1[start:end], ignore_index, None, scale[start:end], use_triton)
            _chunk_backward(logits, h_c, weight, *grads, start, end)
            del logits
        grad_h, grad_w, grad_b = grads
        grad_h = grad_h.view(h_shape) if grad_h is not None else None
        grad_b = grad_b.to(b_dtype) if grad_b is not None else None
        return grad_h, grad_w, None, grad_b, None, None, None


def _alloc_grads(h2, weight, bias, need_h: bool, need_w: bool, need_b: bool):
    grad_h = torch.empty_like(h2) if need_h else None
    grad_w = torch.zeros_like(weight) if need_w else None
    acc = torch.promote_types(bias.dtype, torch.float32) if bias is not None else torch.float32
    grad_b = torch.zeros(bias.shape[0], dtype=acc, device=h2.device) if need_b else None
    return grad_h, grad_w, grad_b


def fused_linear_cross_entropy_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    *,
    use_triton: bool,
) -> torch.Tensor:
    """Chunked fused linear cross-entropy; use_triton picks the per-chunk cross-entropy (kernel or PyTorch).

    Under autocast the matmuls run in the autocast dtype, as F.linear would there (the unfused reference under
    autocast), and the gradients come back in the inputs' own dtypes.
    """
    return FusedLinearCrossEntropyFunction.apply(
        hidden, weight, target, bias, ignore_index, reduction, use_triton, autocast_dtype(hidden, weight)
    )


def autocast_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast would give this matmul, or None outside autocast (or for fp64, which autocast leaves).

    Why: inside an autograd.Function's forward autocast is still on, so F.linear would silently produce bf16
    logits while the accumulators stay fp32, and the backward runs with autocast off (mixed-dtype matmuls fail).
    Casting once up front and running the chunks with autocast off keeps every matmul in one dtype.
    """
    device_type = hidden.device.type
    if not torch.is_autocast_enabled(device_type):
        return None
    if torch.float64 in (hidden.dtype, weight.dtype):
        return None
    return torch.get_autocast_dtype(device_type)
