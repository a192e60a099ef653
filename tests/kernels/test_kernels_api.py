"""normia.ops as others use it: bad input -> a clear error, backend selection, import hygiene, the nn.Modules."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import normia.ops as ops
from normia.ops.modules import LayerNorm, LMHeadLoss, RMSNorm, RotaryEmbedding, SwiGLUMLP


@pytest.fixture(autouse=True)
def _reset_backend(monkeypatch):
    monkeypatch.delenv("NORMIA_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ops.set_backend(None)
    yield
    ops.set_backend(None)


# ---- bad input --------------------------------------------------------------------------------------------
def test_integer_activations_are_refused_with_the_dtype():
    with pytest.raises(
        TypeError, match=r"rms_norm: x must be a floating-point tensor, got dtype torch.int64"
    ):
        ops.rms_norm(torch.ones(2, 4, dtype=torch.int64), torch.ones(4))


def test_weight_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"weight must have shape \(8,\).*got weight \(7,\) and x \(2, 8\)"):
        ops.layer_norm(torch.randn(2, 8), torch.ones(7))
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        ops.layer_norm(torch.randn(2, 8), torch.ones(8), torch.ones(3))


def test_swiglu_and_add_rms_norm_need_matching_pairs():
    with pytest.raises(ValueError, match=r"gate and up must have the same shape, got \(2, 3\) and \(2, 4\)"):
        ops.swiglu(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"x and residual must have the same shape"):
        ops.add_rms_norm(torch.randn(2, 3), torch.randn(3, 3), torch.ones(3))


def test_rope_shapes_are_checked():
    with pytest.raises(ValueError, match=r"cos must have shape \(5, 8\)"):
        ops.apply_rope(torch.randn(1, 2, 5, 8), torch.randn(6, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="head_dim must be even"):
        ops.apply_rope(torch.randn(1, 2, 5, 7), torch.randn(5, 7), torch.randn(5, 7))
    with pytest.raises(ValueError, match=r"x must be \(batch, heads, seq, head_dim\)"):
        ops.apply_rope(torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8))


def test_cross_entropy_target_errors():
    logits = torch.randn(3, 10)
    with pytest.raises(TypeError, match=r"target must be an int64 or int32 tensor.*torch.float32"):
        ops.cross_entropy(logits, torch.zeros(3))
    with pytest.raises(
        ValueError, match=r"target shape \(4,\) must equal logits's shape without its last dim, \(3,\)"
    ):
        ops.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target holds 10 at flat index 2; classes must be in \[0, 10\)"):
        ops.cross_entropy(logits, torch.tensor([0, -100, 10]))
    with pytest.raises(ValueError, match=r"target holds -1 at flat index 0"):
        ops.cross_entropy(logits, torch.tensor([-1, 0, 1]))
    with pytest.raises(ValueError, match="reduction must be one of none, sum, mean, got 'avg'"):
        ops.cross_entropy(logits, torch.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        ops.cross_entropy(logits, torch.tensor([0, 1, 2]), label_smoothing=1.5)


def test_fused_linear_cross_entropy_errors():
    h, w = torch.randn(4, 8), torch.randn(20, 8)
    with pytest.raises(ValueError, match=r"weight must be \(vocab, 8\).*got weight \(20, 9\)"):
        ops.fused_linear_cross_entropy(h, torch.randn(20, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target holds 20 .* \[0, 20\)"):
        ops.fused_linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 20]))
    with pytest.raises(TypeError, match="hidden and weight must have the same dtype"):
        ops.fused_linear_cross_entropy(h.half(), w, torch.zeros(4, dtype=torch.long))


def test_mixed_devices_are_refused():
    """A 'meta' tensor stands in for a second device on this CPU-only machine; the check is device-generic."""
    with pytest.raises(ValueError, match="all tensors must be on one device, got x on cpu, weight on meta"):
        ops.rms_norm(torch.randn(2, 4), torch.ones(4, device="meta"))


# ---- backend ----------------------------------------------------------------------------------------------
def test_backend_from_env_and_override(monkeypatch):
    assert ops.get_backend() == "auto"
    monkeypatch.setenv("NORMIA_KERNELS", "TORCH")
    assert ops.get_backend() == "torch"
    ops.set_backend("triton")
    assert ops.get_backend() == "triton"
    ops.set_backend(None)
    monkeypatch.setenv("NORMIA_KERNELS", "cuda")
    with pytest.raises(
        ValueError, match="NORMIA_KERNELS='cuda' is not a kernel backend; use one of auto, triton"
    ):
        ops.rms_norm(torch.randn(2, 4), torch.ones(4))
    with pytest.raises(ValueError, match="set_backend"):
        ops.set_backend("fast")


def test_auto_runs_the_reference_on_cpu_and_forced_triton_says_why_not():
    x, w = torch.randn(2, 4), torch.ones(4)
    torch.testing.assert_close(ops.rms_norm(x, w), F.rms_norm(x, (4,), w, 1e-6))
    ops.set_backend("triton")
    with pytest.raises(RuntimeError, match="backend 'triton' needs CUDA tensors, got a cpu tensor"):
        ops.rms_norm(x, w)


def test_import_needs_no_cuda_and_no_heavy_packages():
    code = (
        "import sys, torch, normia.ops, normia.ops.modules\n"
        "assert not torch.cuda.is_initialized(), 'CUDA touched at import'\n"
        "heavy = [m for m in ('lightning', 'mlflow', 'hydra') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_works_without_triton_installed():
    """A machine without triton (e.g. macOS): normia.ops imports, the reference runs, forcing triton says why."""
    code = (
        "import sys; sys.modules['triton'] = None  # makes `import triton` raise ImportError\n"
        "import torch, normia.ops as ops\n"
        "from normia.kernels._triton import HAS_TRITON; assert not HAS_TRITON\n"
        "h, w = torch.randn(6, 8, requires_grad=True), torch.randn(20, 8, requires_grad=True)\n"
        "ops.fused_linear_cross_entropy(h, w, torch.randint(0, 20, (6,))).backward()\n"
        "assert ops.rms_norm(h, torch.ones(8)).shape == (6, 8)\n"
        "ops.set_backend('triton')\n"
        "try:\n"
        "    ops.swiglu(h, h)\n"
        "except RuntimeError as e:\n"
        "    assert 'triton is not installed' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('forced triton ran without triton')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---- modules ----------------------------------------------------------------------------------------------
def test_norm_modules():
    x, r = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    norm = RMSNorm(16)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, 1e-6))
    y, s = norm(x, r)
    torch.testing.assert_close(s, x + r)
    torch.testing.assert_close(y, norm(x + r))
    ln = LayerNorm(16, bias=False)
    assert ln.bias is None
    torch.testing.assert_close(ln(x), F.layer_norm(x, (16,), ln.weight, None, 1e-5))
    assert "eps=1e-05" in repr(ln)


def test_swiglu_mlp_matches_its_definition():
    mlp = SwiGLUMLP(16, 40)
    x = torch.randn(2, 5, 16)
    expected = mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    torch.testing.assert_close(mlp(x), expected)
    assert mlp.gate_proj.bias is None and SwiGLUMLP(4, 8, bias=True).up_proj.bias is not None


def test_rotary_embedding_relative_positions_and_offset():
    rot = RotaryEmbedding(8, max_seq_len=16)
    q, k = torch.randn(1, 1, 1, 8).expand(1, 1, 12, 8), torch.randn(1, 1, 1, 8).expand(1, 1, 12, 8)
    rq, rk = rot(q.contiguous()), rot(k.contiguous())
    torch.testing.assert_close(rq[..., 0, :], q[..., 0, :])  # position 0 is not rotated
    dots = (rq[0, 0, :, None, :] * rk[0, 0, None, :, :]).sum(-1)  # <q_i, k_j> depends on i - j only
    torch.testing.assert_close(dots[3, 1], dots[10, 8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rot(q.contiguous()[:, :, 4:], offset=4), rq[:, :, 4:])
    with pytest.raises(ValueError, match="exceed max_seq_len=16"):
        rot(torch.randn(1, 1, 10, 8), offset=8)


def test_rotary_tables_stay_fp32_under_module_to_dtype():
    rot = RotaryEmbedding(8, 4).to(torch.bfloat16)
    cos, sin = rot.tables(torch.device("cpu"))
    assert cos.dtype == torch.float32 and sin.dtype == torch.float32 and not list(rot.state_dict())
    assert rot(torch.randn(1, 1, 4, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_lm_head_loss_equals_linear_plus_cross_entropy_and_ties_to_an_embedding():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 16)
    head = LMHeadLoss(16, 50, bias=True, ignore_index=-1)
    head.weight = emb.weight  # tying: same Parameter
    h = torch.randn(3, 7, 16)
    t = torch.randint(0, 50, (3, 7))
    t[0, 0] = -1
    loss = head(h, t)
    ref = F.cross_entropy(head.logits(h).reshape(-1, 50), t.reshape(-1), ignore_index=-1)
    torch.testing.assert_close(loss, ref)
    (loss + emb(t.clamp(min=0)).sum() * 0).backward()
    assert emb.weight.grad is not None and head.bias.grad is not None
    assert head(h, t, reduction="none").shape == (3, 7)


def test_add_rms_norm_promotes_mixed_float_dtypes_as_torch_does():
    """A bf16 block output added to an fp32 residual stream (autocast) gives fp32 outputs, fp32 statistics."""
    x = torch.randn(3, 16, dtype=torch.bfloat16, requires_grad=True)
    r = torch.randn(3, 16, requires_grad=True)
    w = torch.randn(16)
    y, s = ops.add_rms_norm(x, r, w)
    assert y.dtype == s.dtype == torch.float32
    assert torch.equal(s, x.float() + r)
    (y.sum() + s.sum()).backward()
    assert x.grad.dtype == torch.bfloat16 and r.grad.dtype == torch.float32


def test_fused_linear_cross_entropy_under_autocast_matches_the_unfused_loss():
    torch.manual_seed(0)
    h = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(50, 32, requires_grad=True)
    t = torch.randint(0, 50, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = ops.fused_linear_cross_entropy(h, w, t)
    fused.backward()
    got = (fused.detach(), h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy(F.linear(h, w), t)
    ref.backward()
    assert fused.dtype == torch.float32
    assert got[1].dtype == got[2].dtype == torch.float32
    for a, b in zip(got, (ref.detach(), h.grad, w.grad)):
        assert ((a - b).abs().max() / b.abs().max()).item() < 2e-2


# ---- scale safety: x^2 overflows fp32 from |x| ~ 1.8e19; a finite row must still normalise ---------------------
HUGE_ROW = [[3e19, -4e19]]  # the example: torch's own norms return zeros here


def test_rms_norm_of_a_huge_row_is_not_zeros():
    y = ops.rms_norm(torch.tensor(HUGE_ROW), torch.ones(2))
    assert torch.allclose(y, torch.tensor([[0.8485, -1.1314]]), atol=1e-4)
    y, _ = ops.add_rms_norm(torch.tensor(HUGE_ROW), torch.zeros(1, 2), torch.ones(2))
    assert torch.allclose(y, torch.tensor([[0.8485, -1.1314]]), atol=1e-4)


def test_layer_norm_of_a_huge_row_is_not_zeros():
    y = ops.layer_norm(torch.tensor(HUGE_ROW), torch.ones(2), torch.zeros(2))
    assert torch.allclose(y, torch.tensor([[1.0, -1.0]]), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norms_near_the_top_of_the_float_range_match_a_float64_reference(dtype):
    """Rows at 1e30..3e38 (bf16 reaches them too), with gradients: compared with the plain formula in float64."""
    torch.manual_seed(0)
    x = (torch.randn(3, 64, dtype=torch.float64) * torch.tensor([[1e30], [1e36], [1e37]])).to(dtype)
    w = torch.randn(64)
    for op, ref in (
        (
            lambda t: ops.rms_norm(t, w),
            lambda t: t * torch.rsqrt(t.square().mean(-1, keepdim=True)) * w.double(),
        ),
        (
            lambda t: ops.layer_norm(t, w),
            lambda t: (t - t.mean(-1, keepdim=True)) / t.std(-1, unbiased=False, keepdim=True) * w.double(),
        ),
    ):
        xg = x.detach().requires_grad_()
        y = op(xg)
        assert torch.isfinite(y).all()
        xd = x.detach().double().requires_grad_()
        y_ref = ref(xd)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        assert ((y.double() - y_ref).abs().max() / y_ref.abs().max()).item() < tol
        g = torch.randn_like(y_ref)
        y.backward(g.to(y.dtype))
        y_ref.backward(g)
        assert ((xg.grad.double() - xd.grad).abs().max() / xd.grad.abs().max()).item() < 10 * tol
