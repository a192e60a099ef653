"""GPU-only checks of the Triton kernels: real shapes, bf16, tensors past 2^31 elements, the fused loss's memory.

Skipped without CUDA. Run on a GPU machine with: pytest -m gpu tests/kernels/test_gpu_kernels.py
References are computed in float64 on the GPU; for the >2^31-element cases only the rows past the 2^31 boundary
(where 32-bit offsets would wrap) are compared, against a reference computed on those rows alone.
"""

from __future__ import annotations

import pytest
import torch
from kernel_checks import check_op, fresh_seed, rel_err

import normia.ops as ops
from normia.kernels import (
    add_rms_norm,
    cross_entropy,
    fused_linear_cross_entropy,
    layer_norm,
    rms_norm,
    rope,
    swiglu,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton kernels compiled for it)"
    ),
]

CUDA = "cuda"
BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
BIG = 2**31


@pytest.fixture(autouse=True)
def _auto_backend():
    ops.set_backend("auto")  # auto must pick Triton for CUDA tensors
    yield
    ops.set_backend(None)
    torch.cuda.empty_cache()


def _rand(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, device=CUDA, dtype=dtype)


def _free_gib() -> float:
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


def _graph_names(t: torch.Tensor) -> set[str]:
    """Class names of every autograd node behind t."""
    names, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    return names


def test_auto_dispatch_runs_the_triton_ops():
    x = _rand(4, 64, dtype=BF16).requires_grad_()
    assert "normia_rms_norm_fwd" in type(ops.rms_norm(x, _rand(64, dtype=BF16)).grad_fn).__name__
    logits = _rand(4, 100, dtype=BF16).requires_grad_()
    loss = ops.cross_entropy(logits, torch.zeros(4, dtype=torch.long, device=CUDA))
    assert any("normia_cross_entropy_fwd" in name for name in _graph_names(loss))


NORM_CASES = [
    ((4096, 4096), BF16),
    ((4096, 4096), FP32),
    ((8192, 1024), FP16),
    ((3, 777), BF16),
    ((64, 20000), BF16),  # longer than LIMITS.max_fused_row: the block-loop kernels
    ((64, 20000), FP32),
    ((2, 1024, 5120), BF16),
]


@pytest.mark.parametrize(("shape", "dtype"), NORM_CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_norms_at_scale(shape, dtype):
    seed = fresh_seed()
    x, w, b = _rand(*shape, dtype=dtype), _rand(shape[-1], dtype=dtype), _rand(shape[-1], dtype=dtype)
    check_op(ops.rms_norm, rms_norm.rms_norm_reference, [x, w, 1e-6], dtype, (0, 1), seed, "rms")
    check_op(
        ops.layer_norm, layer_norm.layer_norm_reference, [x + 1, w, b, 1e-5], dtype, (0, 1, 2), seed, "ln"
    )
    r = _rand(*shape, dtype=dtype)
    check_op(ops.add_rms_norm, add_rms_norm.add_rms_norm_reference, [x, r, w, 1e-6], dtype, (0, 1, 2), seed)


@pytest.mark.parametrize("dtype", [FP32, BF16], ids=["fp32", "bf16"])
def test_swiglu_and_rope_at_scale(dtype):
    seed = fresh_seed()
    g, u = _rand(8192, 14336, dtype=dtype), _rand(8192, 14336, dtype=dtype)
    check_op(ops.swiglu, swiglu.swiglu_reference, [g, u], dtype, (0, 1), seed, "swiglu")
    del g, u
    x = _rand(4, 2048, 32, 128, dtype=dtype).transpose(1, 2)  # (B, T, H, D) read as (B, H, T, D)
    cos, sin = _rand(2048, 128, dtype=FP32), _rand(2048, 128, dtype=FP32)
    check_op(ops.apply_rope, rope.apply_rope_reference, [x, cos, sin], dtype, (0,), seed, "rope")


@pytest.mark.parametrize(
    ("reduction", "dtype"), [("mean", BF16), ("sum", BF16), ("none", BF16), ("none", FP32)], ids=str
)
def test_cross_entropy_at_vocab_128k(reduction, dtype):
    seed = fresh_seed()
    logits = _rand(4096, 128256, dtype=dtype) * 4
    t = torch.randint(0, 128256, (4096,), device=CUDA)
    t[::7] = -100
    check_op(
        ops.cross_entropy, cross_entropy.cross_entropy_reference, [logits, t, -100, reduction, 0.1],
        dtype, (0,), seed, reduction,
    )  # fmt: skip


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_linear_cross_entropy_bf16_llama_head(reduction):
    seed = fresh_seed()
    h, w = _rand(8192, 4096, dtype=BF16), _rand(128256, 4096, dtype=BF16) * 0.02
    t = torch.randint(0, 128256, (8192,), device=CUDA)
    t[::5] = -100
    check_op(
        ops.fused_linear_cross_entropy, fused_linear_cross_entropy.fused_linear_cross_entropy_reference,
        [h, w, t, None, -100, reduction], BF16, (0, 1), seed, reduction,
    )  # fmt: skip


def _peak_extra_bytes(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def test_fused_linear_cross_entropy_uses_a_quarter_of_the_unfused_memory_at_vocab_128k():
    h = _rand(8192, 4096, dtype=BF16).requires_grad_()
    w = (_rand(128256, 4096, dtype=BF16) * 0.02).requires_grad_()
    t = torch.randint(0, 128256, (8192,), device=CUDA)

    def fused():
        ops.fused_linear_cross_entropy(h, w, t).backward()
        h.grad = w.grad = None

    def unfused():
        torch.nn.functional.cross_entropy(h @ w.t(), t).backward()
        h.grad = w.grad = None

    fused_b, unfused_b = _peak_extra_bytes(fused), _peak_extra_bytes(unfused)
    assert fused_b <= unfused_b / 4, f"fused {fused_b / 2**30:.2f} GiB vs unfused {unfused_b / 2**30:.2f} GiB"


# ---- past 2^31 elements: the rows after the boundary must be right -------------------------------------------
def _need(gib: float) -> None:
    if _free_gib() < gib:
        pytest.skip(f"needs {gib:.0f} GiB free GPU memory, {_free_gib():.0f} GiB free")


def test_rms_norm_and_layer_norm_past_2_31_elements():
    _need(40)
    n_cols = 4096
    n_rows = BIG // n_cols + 64
    x = _rand(n_rows, n_cols, dtype=BF16).requires_grad_()
    w = _rand(n_cols, dtype=BF16).requires_grad_()
    tail = slice(BIG // n_cols - 8, n_rows)
    for op, ref, args in (
        (ops.rms_norm, rms_norm.rms_norm_reference, (1e-6,)),
        (ops.layer_norm, layer_norm.layer_norm_reference, (None, 1e-5)),
    ):
        y = op(x, w, *args)
        dy = torch.randn_like(y)
        y.backward(dy)
        x_t = x.detach()[tail].double().requires_grad_()
        y_ref = ref(x_t, w.detach().double(), *args)
        y_ref.backward(dy[tail].double())
        assert rel_err(y[tail], y_ref) <= 2e-2, op.__name__
        assert rel_err(x.grad[tail], x_t.grad) <= 2e-2, op.__name__
        x.grad = w.grad = None
        del y, dy


def test_swiglu_past_2_31_elements():
    _need(30)
    n = BIG + 4096
    g, u = _rand(n, dtype=BF16).requires_grad_(), _rand(n, dtype=BF16).requires_grad_()
    y = ops.swiglu(g, u)
    dy = torch.randn_like(y)
    y.backward(dy)
    tail = slice(BIG - 4096, n)
    gt, ut = g.detach()[tail].double().requires_grad_(), u.detach()[tail].double().requires_grad_()
    yr = swiglu.swiglu_reference(gt, ut)
    yr.backward(dy[tail].double())
    assert (
        rel_err(y[tail], yr) <= 2e-2
        and rel_err(g.grad[tail], gt.grad) <= 2e-2
        and rel_err(u.grad[tail], ut.grad) <= 2e-2
    )


def test_rope_past_2_31_elements():
    _need(30)
    seq = BIG // (32 * 128) + 16
    x = _rand(1, 32, seq, 128, dtype=BF16).requires_grad_()
    cos, sin = _rand(seq, 128, dtype=FP32), _rand(seq, 128, dtype=FP32)
    y = ops.apply_rope(x, cos, sin)
    dy = torch.randn_like(y)
    y.backward(dy)
    head = slice(31, 32)  # the last head holds the elements past 2^31
    xt = x.detach()[:, head].double().requires_grad_()
    yr = rope.apply_rope_reference(xt, cos.double(), sin.double())
    yr.backward(dy[:, head].double())
    assert rel_err(y[:, head], yr) <= 2e-2 and rel_err(x.grad[:, head], xt.grad) <= 2e-2


def test_cross_entropy_past_2_31_logits():
    _need(30)
    vocab = 128256
    n = BIG // vocab + 32
    logits = _rand(n, vocab, dtype=BF16).requires_grad_()
    t = torch.randint(0, vocab, (n,), device=CUDA)
    loss = ops.cross_entropy(logits, t, reduction="none")
    dl = torch.rand_like(loss)
    loss.backward(dl)
    tail = slice(BIG // vocab - 4, n)
    lt = logits.detach()[tail].double().requires_grad_()
    ref = cross_entropy.cross_entropy_reference(lt, t[tail], reduction="none")
    ref.backward(dl[tail].double())
    assert rel_err(loss[tail], ref) <= 2e-2 and rel_err(logits.grad[tail], lt.grad) <= 2e-2


def test_norms_of_rows_whose_squares_overflow_fp32():
    """|x| ~ 4e19: x^2 overflows fp32. The register path divides by the row's max first (no extra memory pass)."""
    x = torch.tensor([[3e19, -4e19]], device=CUDA)
    w = torch.ones(2, device=CUDA)
    assert torch.allclose(ops.rms_norm(x, w).cpu(), torch.tensor([[0.8485, -1.1314]]), atol=1e-4)
    assert torch.allclose(ops.layer_norm(x, w).cpu(), torch.tensor([[1.0, -1.0]]), atol=1e-4)
    xb = (_rand(8, 4096, dtype=torch.float32) * 1e30).to(BF16)
    wb = _rand(4096, dtype=BF16)
    assert rel_err(ops.rms_norm(xb, wb), rms_norm.rms_norm_reference(xb.double(), wb.double())) <= 2e-2
