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

    GPUs: 2x the base. Each chunk's d(weight) matmul re-reads and re-writes the whole (vocab, hidden)
    accumulator; at 256 tokens (hidden 4096, vocab 128k) that traffic outlasts the matmul, at 512 the matmul
    hides it, and the chunk of logits stays ~1/16 of the full logits.
    CPUs: at least LIMITS.flce_cpu_chunk_elements logits (128 MB in fp32): CPU matmuls with a few dozen rows
    run at a fraction of their speed (32-token chunks made the step 2-4x slower than unfused at 1k tokens).
    """
    if LIMITS.flce_chunk_rows:
        return LIMITS.flce_chunk_rows
    factor = triton.cdiv(vocab_size, hidden_size)
    rows = next_pow2(triton.cdiv(max(n_rows, 1), factor))
    if device_type == "cuda":
        rows *= 2
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


def _chunk_ce(logits, target, ignore_index, loss, scale, use_triton: bool) -> None:
    if use_triton:
        stats = (
            torch.empty((loss.shape[0], 2), dtype=torch.float32, device=loss.device)
            if loss is not None
            else None
        )
        grad = logits if scale is not None else None
        cross_entropy_rows(logits, target, ignore_index, loss=loss, stats=stats, grad=grad, scale=scale)
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
    def forward(ctx, hidden, weight, target, bias, ignore_index: int, reduction: str, use_triton: bool):
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
    """Chunked fused linear cross-entropy; use_triton picks the per-chunk cross-entropy (kernel or PyTorch)."""
    return FusedLinearCrossEntropyFunction.apply(
        hidden, weight, target, bias, ignore_index, reduction, use_triton
    )
