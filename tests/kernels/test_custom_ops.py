"""The Triton launchers are registered as torch.library ops (torch.ops.normia.*) with fake impls and autograd.

Here (no GPU, no interpreter) the ops are only traced: under FakeTensorMode every op's fake impl must give the
shapes, dtypes and strides the real one allocates (contiguous, in the documented dtypes), and a forward + backward
through the autograd formulas must give gradients shaped and typed like their inputs. interp_cases.py runs the
real ops under Triton's interpreter: torch.library.opcheck and a fullgraph compile of a LLaMA on them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import normia.ops  # noqa: F401  (imports the kernels, which register the ops)
from normia.kernels import _ops
from normia.kernels.add_rms_norm import add_rms_norm_triton
from normia.kernels.cross_entropy import cross_entropy_triton
from normia.kernels.fused_linear_cross_entropy import fused_linear_cross_entropy_chunked
from normia.kernels.layer_norm import layer_norm_triton
from normia.kernels.rms_norm import rms_norm_triton
from normia.kernels.rope import apply_rope_triton
from normia.kernels.swiglu import swiglu_triton

OPS = {
    "add_rms_norm_fwd",
    "cross_entropy_bwd",
    "cross_entropy_fwd",
    "fused_linear_cross_entropy_chunk",
    "layer_norm_bwd",
    "layer_norm_fwd",
    "rms_norm_bwd",
    "rms_norm_fwd",
    "rope",
    "swiglu_bwd",
    "swiglu_fwd",
}
WITH_AUTOGRAD = {
    "add_rms_norm_fwd",
    "cross_entropy_fwd",
    "layer_norm_fwd",
    "rms_norm_fwd",
    "rope",
    "swiglu_fwd",
}
SHAPES = [(3, 64), (2, 5, 96), (1, 7)]
DTYPES = [torch.float32, torch.bfloat16]


def test_every_kernel_is_an_op_under_torch_ops_normia():
    assert set(_ops.registered()) == OPS
    for name in OPS:
        packet = getattr(torch.ops.normia, name)
        schema = str(packet.default._schema)
        assert schema.startswith(f"normia::{name}("), schema
        from torch._library.custom_ops import OPDEFS

        opdef = OPDEFS[f"normia::{name}"]
        assert opdef._abstract_fn is not None, f"{name} has no fake impl"
        assert (opdef._backward_fn is not None) == (name in WITH_AUTOGRAD), f"{name}: autograd registration"
        # a triton_op also decomposes into its wrap_triton kernels under functionalization (what inductor traces)
        assert (len(opdef._torch_dispatch_fns) > 0) == _ops.traceable(), name


def test_as_triton_ops_on_a_gpu_build_of_torch():
    """This file's checks again in a process that takes torch for a CUDA build: the ops register as triton_ops."""
    code = (
        "import sys, torch; torch.version.cuda = '12.6'\n"
        "import normia.ops; from normia.kernels import _ops; assert _ops.traceable()\n"
        "import pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k', 'not gpu_build', sys.argv[1]]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__))],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _contiguous(t: torch.Tensor, shape, dtype) -> None:
    assert tuple(t.shape) == tuple(shape) and t.dtype == dtype, (tuple(t.shape), t.dtype, shape, dtype)
    assert t.is_contiguous(), t.stride()


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fake_impls_and_autograd_formulas_give_the_real_shapes_dtypes_strides(shape, dtype):
    with FakeTensorMode():
        n = shape[-1]
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        w = torch.randn(n, dtype=dtype, requires_grad=True)
        b = torch.randn(n, dtype=dtype, requires_grad=True)
        r = torch.randn(shape, dtype=torch.float32, requires_grad=True)  # an fp32 residual stream
        outs = [rms_norm_triton(x, w), layer_norm_triton(x, w, b), swiglu_triton(x, x * 2)]
        for y in outs:
            _contiguous(y, shape, dtype)
        y, s = add_rms_norm_triton(x, r, w)
        _contiguous(y, shape, torch.float32)  # torch's promotion of bf16 + fp32, as x + residual
        _contiguous(s, shape, torch.float32)
        rows = x.numel() // n
        loss_rows, stats = torch.ops.normia.cross_entropy_fwd(
            x, torch.zeros(shape[:-1], dtype=torch.long), -100, 0.0
        )
        _contiguous(loss_rows, (rows,), torch.float32)
        _contiguous(stats, (rows, 2), torch.float32)
        target = torch.zeros(shape[:-1], dtype=torch.long)
        ce = cross_entropy_triton(x, target)
        _contiguous(ce, (), dtype)
        q = (
            torch.randn(2, 3, 4, 16, dtype=dtype).transpose(1, 2).requires_grad_()
        )  # (B, H, T, D) strided view
        rot = apply_rope_triton(q, torch.randn(4, 16), torch.randn(4, 16))
        _contiguous(rot, (2, 4, 3, 16), dtype)
        weight = torch.randn(11, n, dtype=dtype, requires_grad=True)
        flce = fused_linear_cross_entropy_chunked(x, weight, target, use_triton=True)
        _contiguous(flce, (), dtype)
        total = sum(o.float().sum() for o in [*outs, y, s, rot]) + ce.float() + flce.float()
        total.backward()
        for leaf in (x, w, b, r, q, weight):
            assert leaf.grad is not None and leaf.grad.shape == leaf.shape and leaf.grad.dtype == leaf.dtype
