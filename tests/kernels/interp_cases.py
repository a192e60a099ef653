"""Every Triton kernel, forward and backward, through Triton's interpreter against float64 references.

Not collected by default (the name does not start with test_): test_kernels_interpreter.py runs it in a subprocess with
TRITON_INTERPRET=1, which must be set before triton is imported. By hand:
    TRITON_INTERPRET=1 pytest tests/kernels/interp_cases.py
Shapes stay small: the interpreter costs ~1 ms per program instance. bf16 runs too: the kernels use no tl.dot
and no atomics; the interpreter truncates fp32->bf16 casts, which stays within the bf16 bound.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "needs TRITON_INTERPRET=1 before triton is imported; run via test_kernels_interpreter.py",
        allow_module_level=True,
    )

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
from normia.kernels._triton import LIMITS

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DT_IDS = ["fp32", "fp16", "bf16"]


@pytest.fixture(autouse=True)
def _triton_backend():
    """Force the Triton path through normia.ops (so dispatch is exercised too) and restore block limits."""
    saved = dict(vars(LIMITS))
    ops.set_backend("triton")
    yield
    ops.set_backend(None)
    vars(LIMITS).update(saved)


def _loop_blocks() -> None:
    """Shrink the block ceilings so small shapes take the multi-block loops of the kernels."""
    LIMITS.max_fused_row = 64
    LIMITS.loop_block = 64
    LIMITS.ce_block = 128


def _rand(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64).to(dtype)


ROW_SHAPES = [(1, 64), (3, 777), (2, 5, 96)]


class TestRMSNorm:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
    def test_matches_reference(self, shape, dtype):
        seed = fresh_seed()
        x, w = _rand(*shape, dtype=dtype), _rand(shape[-1], dtype=dtype)
        check_op(ops.rms_norm, rms_norm.rms_norm_reference, [x, w, 1e-6], dtype, (0, 1), seed, f"{shape}")

    @pytest.mark.parametrize("dtype", DTYPES[:2], ids=DT_IDS[:2])
    def test_block_loop_path(self, dtype):
        _loop_blocks()
        seed = fresh_seed()
        x, w = _rand(3, 777, dtype=dtype), _rand(777, dtype=dtype)
        check_op(ops.rms_norm, rms_norm.rms_norm_reference, [x, w, 1e-5], dtype, (0, 1), seed, "loop")

    def test_row_strided_and_transposed_inputs(self):
        seed = fresh_seed()
        base = _rand(4, 1000, dtype=torch.float32)
        x = base[:, 3:780]  # row stride 1000, no copy
        w = _rand(777, dtype=torch.float32)
        check_op(
            ops.rms_norm, rms_norm.rms_norm_reference, [x, w, 1e-6], torch.float32, (0, 1), seed, "slice"
        )
        xt = _rand(40, 6, dtype=torch.float32).t()  # last-dim stride 6
        w = _rand(40, dtype=torch.float32)
        check_op(ops.rms_norm, rms_norm.rms_norm_reference, [xt, w, 1e-6], torch.float32, (0, 1), seed, "t")

    def test_fp32_weight_with_bf16_activations(self):
        seed = fresh_seed()
        x, w = _rand(5, 200, dtype=torch.bfloat16), _rand(200, dtype=torch.float32)
        y = ops.rms_norm(x, w)
        assert y.dtype == torch.bfloat16
        err = rel_err(y, rms_norm.rms_norm_reference(x.double(), w.double()))
        assert err <= 2e-2, f"seed {seed}: {err}"


class TestAddRMSNorm:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("shape", ROW_SHAPES[1:], ids=str)
    def test_matches_reference(self, shape, dtype):
        seed = fresh_seed()
        x, r, w = _rand(*shape, dtype=dtype), _rand(*shape, dtype=dtype), _rand(shape[-1], dtype=dtype)
        check_op(
            ops.add_rms_norm, add_rms_norm.add_rms_norm_reference, [x, r, w, 1e-6], dtype, (0, 1, 2), seed
        )

    def test_block_loop_path(self):
        _loop_blocks()
        seed = fresh_seed()
        x, r, w = (
            _rand(2, 300, dtype=torch.float32),
            _rand(2, 300, dtype=torch.float32),
            _rand(300, dtype=torch.float32),
        )
        check_op(
            ops.add_rms_norm,
            add_rms_norm.add_rms_norm_reference,
            [x, r, w, 1e-6],
            torch.float32,
            (0, 1, 2),
            seed,
        )

    def test_mixed_dtypes_promote(self):
        """bf16 x on an fp32 residual (autocast's residual stream): fp32 outputs, each gradient in its input's dtype."""
        seed = fresh_seed()
        x = _rand(4, 96, dtype=torch.bfloat16).requires_grad_()
        r = _rand(4, 96, dtype=torch.float32).requires_grad_()
        w = _rand(96, dtype=torch.float32)
        y, s = ops.add_rms_norm(x, r, w)
        assert y.dtype == s.dtype == torch.float32
        xd, rd = x.detach().double().requires_grad_(), r.detach().double().requires_grad_()
        y_ref, s_ref = add_rms_norm.add_rms_norm_reference(xd, rd, w.double())
        assert rel_err(y, y_ref) <= 1e-5 and rel_err(s, s_ref) <= 1e-6, f"seed {seed}"
        dy, ds = torch.randn_like(y), torch.randn_like(s)
        torch.autograd.backward((y, s), (dy, ds))
        torch.autograd.backward((y_ref, s_ref), (dy.double(), ds.double()))
        assert x.grad.dtype == torch.bfloat16 and r.grad.dtype == torch.float32
        assert rel_err(r.grad, rd.grad) <= 1e-5 and rel_err(x.grad, xd.grad) <= 1e-2, f"seed {seed}"

    def test_only_the_sum_is_used(self):
        """A backward that receives no gradient for the normed output (dy is None) must still be right."""
        fresh_seed()
        x = _rand(3, 50, dtype=torch.float32).requires_grad_()
        r, w = _rand(3, 50, dtype=torch.float32), _rand(50, dtype=torch.float32)
        _, s = ops.add_rms_norm(x, r, w)
        s.sum().backward()
        assert torch.equal(x.grad, torch.ones_like(x))


class TestLayerNorm:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
    def test_matches_reference(self, shape, dtype):
        seed = fresh_seed()
        x = _rand(*shape, dtype=dtype) * 3 + 1.5  # a non-zero mean exercises the centring
        w, b = _rand(shape[-1], dtype=dtype), _rand(shape[-1], dtype=dtype)
        check_op(ops.layer_norm, layer_norm.layer_norm_reference, [x, w, b, 1e-5], dtype, (0, 1, 2), seed)

    @pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
    def test_block_loop_path(self, bias):
        _loop_blocks()
        seed = fresh_seed()
        x, w = _rand(3, 777, dtype=torch.float32) + 2.0, _rand(777, dtype=torch.float32)
        b = _rand(777, dtype=torch.float32) if bias else None
        grads = (0, 1, 2) if bias else (0, 1)
        check_op(ops.layer_norm, layer_norm.layer_norm_reference, [x, w, b, 1e-5], torch.float32, grads, seed)


class TestSwiGLU:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("shape", [(1, 1), (3, 777), (2, 3, 1000)], ids=str)
    def test_matches_reference(self, shape, dtype):
        seed = fresh_seed()
        g, u = _rand(*shape, dtype=dtype) * 3, _rand(*shape, dtype=dtype)
        check_op(ops.swiglu, swiglu.swiglu_reference, [g, u], dtype, (0, 1), seed, f"{shape}")

    def test_non_contiguous(self):
        seed = fresh_seed()
        gu = _rand(6, 2 * 333, dtype=torch.float32)
        g, u = gu[:, :333], gu[:, 333:]  # the halves of a fused gate/up projection
        check_op(ops.swiglu, swiglu.swiglu_reference, [g, u], torch.float32, (0, 1), seed)


def _rope_tables(seq: int, dim: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.outer(torch.arange(seq, dtype=torch.float64), inv)
    emb = torch.cat((ang, ang), -1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class TestRoPE:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("shape", [(2, 3, 5, 8), (1, 2, 7, 96)], ids=str)
    def test_matches_reference(self, shape, dtype):
        seed = fresh_seed()
        x = _rand(*shape, dtype=dtype)
        cos, sin = _rope_tables(shape[2], shape[3])
        check_op(ops.apply_rope, rope.apply_rope_reference, [x, cos, sin], dtype, (0,), seed, f"{shape}")

    def test_transposed_bthd_input_and_random_tables(self):
        """(B, T, H, D) viewed as (B, H, T, D) is read in place; any (T, D) tables, not only LLaMA's."""
        seed = fresh_seed()
        x = _rand(2, 9, 3, 16, dtype=torch.float32).transpose(1, 2)
        cos, sin = _rand(9, 16, dtype=torch.float32), _rand(9, 16, dtype=torch.float32)
        check_op(ops.apply_rope, rope.apply_rope_reference, [x, cos, sin], torch.float32, (0,), seed)


def _targets(n: int, vocab: int, ignore_every: int = 0, ignore_index: int = -100) -> torch.Tensor:
    t = torch.randint(0, vocab, (n,))
    if ignore_every:
        t[::ignore_every] = ignore_index
    return t


class TestCrossEntropy:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_matches_reference(self, reduction, dtype):
        seed = fresh_seed()
        logits, t = _rand(13, 777, dtype=dtype) * 2, _targets(13, 777, ignore_every=4)
        check_op(
            ops.cross_entropy, cross_entropy.cross_entropy_reference, [logits, t, -100, reduction, 0.0],
            dtype, (0,), seed, reduction,
        )  # fmt: skip

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_label_smoothing_and_block_loop(self, reduction):
        _loop_blocks()
        seed = fresh_seed()
        logits, t = _rand(9, 1000, dtype=torch.float32), _targets(9, 1000, ignore_every=3, ignore_index=7)
        check_op(
            ops.cross_entropy, cross_entropy.cross_entropy_reference, [logits, t, 7, reduction, 0.1],
            torch.float32, (0,), seed, reduction,
        )  # fmt: skip

    def test_leading_shape_and_one_row(self):
        seed = fresh_seed()
        logits, t = _rand(2, 3, 50, dtype=torch.float32), torch.randint(0, 50, (2, 3))
        ref = cross_entropy.cross_entropy_reference
        check_op(ops.cross_entropy, ref, [logits, t, -100, "none", 0.0], torch.float32, (0,), seed)
        logits, t = _rand(1, 50, dtype=torch.float32), torch.randint(0, 50, (1,))
        check_op(ops.cross_entropy, ref, [logits, t, -100, "mean", 0.0], torch.float32, (0,), seed)

    def test_all_ignored_batch_matches_torch(self):
        """mean over zero targets: nan loss with a zero gradient (torch's behaviour); sum: 0."""
        fresh_seed()
        logits = _rand(4, 30, dtype=torch.float32).requires_grad_()
        t = torch.full((4,), -100)
        loss = ops.cross_entropy(logits, t)
        assert math.isnan(loss.item())
        loss.backward()
        assert torch.equal(logits.grad, torch.zeros_like(logits))
        assert ops.cross_entropy(logits, t, reduction="sum").item() == 0.0

    def test_large_logits_are_stable(self):
        """Logits in the thousands: no overflow, and no further from float64 than torch's own fp32 result.

        (At |logits| ~ 1e3 the fp32 rounding of the log-sum-exp alone moves the softmax by ~1e-4, for torch too,
        so the fp32 bound of 1e-5 cannot apply; the bar is torch's own error.)"""
        seed = fresh_seed()
        logits, t = _rand(5, 300, dtype=torch.float32) * 1e3, torch.randint(0, 300, (5,))
        errors = {}
        for name, fn in (("ours", ops.cross_entropy), ("torch", torch.nn.functional.cross_entropy)):
            x = logits.clone().requires_grad_()
            loss = fn(x, t, reduction="sum")
            loss.backward()
            x64 = logits.double().requires_grad_()
            ref = torch.nn.functional.cross_entropy(x64, t, reduction="sum")
            ref.backward()
            assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
            errors[name] = max(rel_err(loss, ref), rel_err(x.grad, x64.grad))
        assert errors["ours"] <= max(1e-5, 2 * errors["torch"]), f"{errors} (seed {seed})"


class TestFusedLinearCrossEntropy:
    @pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_matches_unfused_reference(self, reduction, dtype):
        LIMITS.flce_chunk_rows = 8  # 37 tokens -> 5 chunks, the last one partial
        seed = fresh_seed()
        h, w = _rand(37, 48, dtype=dtype), _rand(100, 48, dtype=dtype) * 0.3
        b, t = _rand(100, dtype=dtype), _targets(37, 100, ignore_every=5)
        check_op(
            ops.fused_linear_cross_entropy, fused_linear_cross_entropy.fused_linear_cross_entropy_reference,
            [h, w, t, b, -100, reduction], dtype, (0, 1, 3), seed, reduction,
        )  # fmt: skip

    def test_no_bias_leading_shape_all_ignored(self):
        fresh_seed()
        h, w = _rand(2, 6, 40, dtype=torch.float32), _rand(90, 40, dtype=torch.float32)
        t = torch.full((2, 6), -100)
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        loss = ops.fused_linear_cross_entropy(hh, ww, t)
        assert math.isnan(loss.item())
        loss.backward()
        assert torch.equal(hh.grad, torch.zeros_like(h)) and torch.equal(ww.grad, torch.zeros_like(w))
        seed = fresh_seed()
        t = torch.randint(0, 90, (2, 6))
        ref = fused_linear_cross_entropy.fused_linear_cross_entropy_reference
        check_op(
            ops.fused_linear_cross_entropy, ref, [h, w, t, None, -100, "mean"], torch.float32, (0, 1), seed
        )


class TestModules:
    def test_a_llama_block_agrees_between_triton_and_torch_backends(self):
        """The wrappers the models use: same parameters, same inputs, both backends, loss and every grad."""
        from normia.ops.modules import LayerNorm, LMHeadLoss, RMSNorm, RotaryEmbedding, SwiGLUMLP

        seed = fresh_seed()
        dim, heads, seq, vocab = 48, 2, 6, 70
        parts = torch.nn.ModuleDict(
            {
                "norm": RMSNorm(dim),
                "ln": LayerNorm(dim),
                "mlp": SwiGLUMLP(dim, 80),
                "head": LMHeadLoss(dim, vocab, bias=True),
            }
        )
        rot = RotaryEmbedding(dim // heads, max_seq_len=16)
        x = torch.randn(2, seq, dim)
        t = torch.randint(0, vocab, (2, seq))
        t[0, :2] = -100

        def run(backend: str):
            ops.set_backend(backend)
            parts.zero_grad()
            h, s = parts["norm"](x, x * 0.5)
            assert ("normia_add_rms_norm_fwd" in type(h.grad_fn).__name__) == (backend == "triton")
            q = rot(h.view(2, seq, heads, dim // heads).transpose(1, 2), offset=3)
            h = parts["ln"](q.transpose(1, 2).reshape(2, seq, dim) + s)
            loss = parts["head"](parts["mlp"](h), t)
            loss.backward()
            return loss.detach(), {k: p.grad.clone() for k, p in parts.named_parameters()}

        loss_triton, grads_triton = run("triton")
        loss_torch, grads_torch = run("torch")
        assert rel_err(loss_triton, loss_torch) <= 1e-5, seed
        for name, g in grads_torch.items():
            assert rel_err(grads_triton[name], g) <= 1e-4, f"{name} (seed {seed})"


class TestScaleSafeNorms:
    """Rows whose squares overflow fp32 (|x| >= ~1.8e19) normalise correctly on the register (single-block) path."""

    def test_the_issue_example(self):
        x, w = torch.tensor([[3e19, -4e19]]), torch.ones(2)
        assert torch.allclose(ops.rms_norm(x, w), torch.tensor([[0.8485, -1.1314]]), atol=1e-4)
        assert torch.allclose(
            ops.add_rms_norm(x, torch.zeros_like(x), w)[0], torch.tensor([[0.8485, -1.1314]]), atol=1e-4
        )
        assert torch.allclose(ops.layer_norm(x, w), torch.tensor([[1.0, -1.0]]), atol=1e-4)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
    def test_huge_rows_with_gradients(self, dtype):
        seed = fresh_seed()
        x = _rand(4, 96, dtype=torch.float64) * torch.tensor(
            [[1.0], [1e25], [1e33], [1e37]], dtype=torch.float64
        )
        x = x.to(dtype)
        w = _rand(96, dtype=dtype)
        check_op(ops.rms_norm, rms_norm.rms_norm_reference, [x, w, 1e-6], dtype, (0, 1), seed, "rms huge")
        check_op(
            ops.layer_norm,
            layer_norm.layer_norm_reference,
            [x, w, None, 1e-5],
            dtype,
            (0, 1),
            seed,
            "ln huge",
        )


def _op_samples() -> dict[str, list[tuple]]:
    """Small fp32 arguments for every torch.ops.normia op (forward ops with inputs that require grad)."""

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape).requires_grad_()

    x, w, dy = torch.randn(3, 40), torch.randn(40), torch.randn(3, 40)
    rstd = torch.ops.normia.rms_norm_fwd(x, w, 1e-6)[1]
    _, mean, rstd_ln = torch.ops.normia.layer_norm_fwd(x, w, w, 1e-5)
    logits, target = torch.randn(4, 30), torch.tensor([1, -100, 29, 0])
    stats = torch.ops.normia.cross_entropy_fwd(logits, target, -100, 0.1)[1]
    return {
        "rms_norm_fwd": [(leaf(3, 40), leaf(40), 1e-6)],
        "rms_norm_bwd": [(dy, x, w, rstd, None), (dy, x, w, rstd, torch.randn(3, 40))],
        "add_rms_norm_fwd": [(leaf(2, 3, 40), leaf(2, 3, 40), leaf(40), 1e-6)],
        "layer_norm_fwd": [(leaf(3, 40), leaf(40), leaf(40), 1e-5), (leaf(3, 40), leaf(40), None, 1e-5)],
        "layer_norm_bwd": [(dy, x, w, w, mean, rstd_ln), (dy, x, w, None, mean, rstd_ln)],
        "swiglu_fwd": [(leaf(5, 24), leaf(5, 24))],
        "swiglu_bwd": [(torch.randn(5, 24), torch.randn(5, 24), torch.randn(5, 24))],
        "rope": [(leaf(1, 2, 5, 16), torch.randn(5, 16), torch.randn(5, 16), False)],
        "cross_entropy_fwd": [(leaf(4, 30), target, -100, 0.0), (leaf(4, 30), target, -100, 0.1)],
        "cross_entropy_bwd": [(torch.randn(4), logits, target, stats, -100, 0.1)],
        "fused_linear_cross_entropy_chunk": [
            (torch.randn(4, 30), target, torch.empty(4), None, -100),
            (torch.randn(4, 30), target, torch.empty(4), torch.randn(4), -100),
            (torch.randn(4, 30), target, None, torch.randn(1), -100),
        ],
    }


OP_NAMES = [
    "add_rms_norm_fwd", "cross_entropy_bwd", "cross_entropy_fwd", "fused_linear_cross_entropy_chunk",
    "layer_norm_bwd", "layer_norm_fwd", "rms_norm_bwd", "rms_norm_fwd", "rope", "swiglu_bwd", "swiglu_fwd",
]  # fmt: skip


class TestCustomOps:
    """The torch.library registration of the Triton paths, with the real kernels (here: the interpreter)."""

    @pytest.mark.parametrize("name", OP_NAMES)
    def test_opcheck(self, name):
        """Schema, fake impl against the real outputs, autograd registration and AOT dispatch (torch's checks)."""
        fresh_seed()
        for args in _op_samples()[name]:
            torch.library.opcheck(getattr(torch.ops.normia, name).default, args)

    def test_llama_on_triton_ops_compiles_fullgraph_and_matches_eager(self):
        from normia.models.llama import Llama

        torch.manual_seed(0)
        model = Llama(vocab_size=64, dim=32, n_layers=1, n_heads=2, n_kv_heads=1, max_seq_len=16)
        tokens = torch.randint(0, 64, (2, 8))
        targets = torch.randint(0, 64, (2, 8))
        eager_loss, _ = model.loss((tokens, targets))
        eager_loss.backward()
        eager = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        torch._dynamo.reset()
        compiled = torch.compile(model.loss, fullgraph=True, backend="aot_eager")
        loss, _ = compiled((tokens, targets))
        loss.backward()
        torch._dynamo.reset()
        assert rel_err(loss, eager_loss) <= 1e-6
        for name, p in model.named_parameters():
            assert rel_err(p.grad, eager[name]) <= 1e-5, name
