"""The PyTorch path of normia.ops (what runs on CPU): agreement with torch's own functions, the chunked fused
linear cross-entropy against the unfused one in float64, and exact gradients for every reduction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_checks import check_op, fresh_seed, rel_err

import normia.ops as ops
from normia.kernels import fused_linear_cross_entropy as flce
from normia.kernels._triton import LIMITS
from normia.ops.modules import RotaryEmbedding


@pytest.fixture(autouse=True)
def _torch_backend():
    ops.set_backend("torch")
    yield
    ops.set_backend(None)
    LIMITS.flce_chunk_rows = 0
    LIMITS.flce_cpu_chunk_elements = 2**25


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 8), (3, 777), (2, 4, 96)], ids=str)
def test_rms_norm_equals_torch_rms_norm(shape, dtype):
    fresh_seed()
    x, w = torch.randn(shape, dtype=dtype), torch.randn(shape[-1], dtype=dtype)
    torch.testing.assert_close(ops.rms_norm(x, w, 1e-6), F.rms_norm(x, (shape[-1],), w, 1e-6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_norm_equals_torch_layer_norm(dtype):
    fresh_seed()
    x, w, b = (
        torch.randn(3, 777, dtype=dtype) + 2,
        torch.randn(777, dtype=dtype),
        torch.randn(777, dtype=dtype),
    )
    torch.testing.assert_close(ops.layer_norm(x, w, b), F.layer_norm(x, (777,), w, b, 1e-5))
    torch.testing.assert_close(ops.layer_norm(x, w, None, 1e-3), F.layer_norm(x, (777,), w, None, 1e-3))


def test_half_precision_outputs_keep_input_dtype_and_fp32_accuracy():
    seed = fresh_seed()
    x, w = torch.randn(4, 300, dtype=torch.float16), torch.randn(300, dtype=torch.float16)
    y = ops.rms_norm(x, w)
    assert y.dtype == torch.float16
    assert rel_err(y, F.rms_norm(x.double(), (300,), w.double(), 1e-6)) <= 2e-3, seed


def test_swiglu_equals_silu_times_up():
    fresh_seed()
    g, u = torch.randn(5, 333, dtype=torch.float64), torch.randn(5, 333, dtype=torch.float64)
    torch.testing.assert_close(ops.swiglu(g, u), F.silu(g) * u)


def test_rope_rotates_each_pair_by_its_angle():
    """rotate-half with LLaMA tables == rotating (x_i, x_{i+D/2}) by angle t * theta_i (complex form)."""
    fresh_seed()
    bsz, heads, seq, dim = 2, 3, 7, 16
    rot = RotaryEmbedding(dim, 32)
    x = torch.randn(bsz, heads, seq, dim, dtype=torch.float64)
    cos, sin = rot.tables(x.device)
    y = ops.apply_rope(x, cos[:seq].double(), sin[:seq].double())
    theta = 1.0 / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    z = torch.complex(x[..., : dim // 2], x[..., dim // 2 :]) * torch.polar(
        torch.ones(seq, dim // 2, dtype=torch.float64),
        torch.arange(seq, dtype=torch.float64)[:, None] * theta,
    )
    torch.testing.assert_close(y, torch.cat((z.real, z.imag), -1), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_equals_torch(reduction, smoothing):
    fresh_seed()
    logits = torch.randn(11, 50, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (11,))
    t[::3] = -1
    ours = ops.cross_entropy(logits, t, ignore_index=-1, reduction=reduction, label_smoothing=smoothing)
    theirs = F.cross_entropy(logits, t, ignore_index=-1, reduction=reduction, label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, logits, g)[0], torch.autograd.grad(theirs, logits, g)[0]
    )


def test_cross_entropy_all_ignored_is_nan_like_torch():
    logits = torch.randn(3, 10, requires_grad=True)
    t = torch.full((3,), -100)
    loss = ops.cross_entropy(logits, t)
    assert torch.isnan(loss) and torch.isnan(F.cross_entropy(logits, t))
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_chunked_linear_cross_entropy_equals_unfused_in_float64(reduction, bias):
    """The CPU path chunks too: 8-token chunks over 37 tokens, exact to float64 rounding, any upstream grad."""
    LIMITS.flce_chunk_rows = 8
    seed = fresh_seed()
    h, w = torch.randn(37, 24, dtype=torch.float64), torch.randn(90, 24, dtype=torch.float64)
    b = torch.randn(90, dtype=torch.float64) if bias else None
    t = torch.randint(0, 90, (37,))
    t[::4] = -100
    grads = (0, 1, 3) if bias else (0, 1)
    check_op(
        ops.fused_linear_cross_entropy, flce.fused_linear_cross_entropy_reference,
        [h, w, t, b, -100, reduction], torch.float64, grads, seed, reduction,
    )  # fmt: skip


def test_chunked_linear_cross_entropy_passes_gradcheck():
    """reduction="none" (recomputing backward); mean/sum compute grads in the forward and allow one backward,
    so gradcheck's re-entrancy check does not apply to them (check_op covers their gradients above)."""
    LIMITS.flce_chunk_rows = 4
    fresh_seed()
    h = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(13, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 13, (2, 5))
    t[0, 1] = -100
    fn = lambda h, w, b: ops.fused_linear_cross_entropy(h, w, t, b, reduction="none")
    assert torch.autograd.gradcheck(fn, (h, w, b))


def test_fused_linear_cross_entropy_never_builds_full_logits(monkeypatch):
    """Every logits block the fused path computes has at most chunk-size rows (spy on the real F.linear)."""
    rows_seen: list[int] = []
    real_linear = flce.F.linear

    def spy(x, weight, bias=None):
        rows_seen.append(x.shape[0])
        return real_linear(x, weight, bias)

    monkeypatch.setattr(flce.F, "linear", spy)
    LIMITS.flce_cpu_chunk_elements = 256 * 8  # the CPU floor, scaled down to this test's sizes: 8 rows
    n, hidden, vocab = 512, 16, 256
    h, w = torch.randn(n, hidden, requires_grad=True), torch.randn(vocab, hidden, requires_grad=True)
    ops.fused_linear_cross_entropy(h, w, torch.randint(0, vocab, (n,))).backward()
    assert flce.chunk_rows(n, hidden, vocab, "cuda") == 128  # 4x (chunk logits as large as the hidden states)
    assert flce.chunk_rows(n, hidden, vocab, "cpu") == 32  # the base rule wins over the 8-row floor
    assert rows_seen and max(rows_seen) == 32 and sum(rows_seen) == n
    LIMITS.flce_cpu_chunk_elements = 256 * 100  # floor of 100 rows -> 64 (power of two below)
    assert flce.chunk_rows(n, hidden, vocab, "cpu") == 64
    LIMITS.flce_cpu_chunk_elements = 2**30  # a floor above the whole logits still leaves two chunks
    assert flce.chunk_rows(n, hidden, vocab, "cpu") == 256 and flce.chunk_rows(n, 1024, 256, "cuda") == 256


def test_eager_gradients_refuse_a_second_backward():
    h, w = torch.randn(6, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
    loss = ops.fused_linear_cross_entropy(h, w, torch.randint(0, 9, (6,)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


def test_no_grad_inputs_skip_gradient_work():
    h, w = torch.randn(6, 4), torch.randn(9, 4)
    t = torch.randint(0, 9, (6,))
    torch.testing.assert_close(
        ops.fused_linear_cross_entropy(h, w, t), F.cross_entropy(h @ w.t(), t), rtol=1e-6, atol=1e-6
    )


def test_chunked_path_stays_accurate_with_large_logits():
    """|logits| ~ 1e3 in fp32: the chunked path is no further from float64 than torch's unfused fp32 path."""
    LIMITS.flce_chunk_rows = 4
    seed = fresh_seed()
    h, w = torch.randn(12, 16) * 30, torch.randn(40, 16) * 10
    t = torch.randint(0, 40, (12,))
    errors = {}
    for name in ("ours", "torch"):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        if name == "ours":
            loss = ops.fused_linear_cross_entropy(hh, ww, t, reduction="sum")
        else:
            loss = F.cross_entropy(hh @ ww.t(), t, reduction="sum")
        loss.backward()
        h64, w64 = h.double().requires_grad_(), w.double().requires_grad_()
        ref = F.cross_entropy(h64 @ w64.t(), t, reduction="sum")
        ref.backward()
        errors[name] = max(rel_err(loss, ref), rel_err(hh.grad, h64.grad), rel_err(ww.grad, w64.grad))
    assert errors["ours"] <= max(1e-5, 2 * errors["torch"]), f"{errors} (seed {seed})"
