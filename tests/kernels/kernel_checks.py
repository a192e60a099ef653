"""Shared checking code: run an op and its float64 reference on the same random inputs, compare outputs and grads.

Random inputs are drawn fresh each run; the seed is printed in every failure message (NORMIA_TEST_SEED=<seed>
replays it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-12}


def fresh_seed() -> int:
    seed = int(os.environ.get("NORMIA_TEST_SEED", "0")) or int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    return seed


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|: one number per tensor, insensitive to elements near zero."""
    got, ref = got.detach().double(), ref.detach().double()
    if ref.numel() == 0:
        return 0.0
    scale = ref.abs().max().clamp_min(1e-30)
    return float((got - ref).abs().max() / scale)


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def check_op(
    op: Callable,
    ref: Callable,
    inputs: Sequence,
    dtype: torch.dtype,
    grad_of: Sequence[int],
    seed: int,
    label: str = "",
) -> None:
    """op(*inputs) vs ref(*inputs in float64): outputs and gradients wrt inputs[grad_of] within TOL[dtype].

    Non-tensor inputs pass through unchanged; integer tensors (targets) are shared. The upstream gradient is
    random, drawn once and given to both sides.
    """
    tol = TOL[dtype]
    ours = [t.detach().requires_grad_(i in grad_of) if _is_float(t) else t for i, t in enumerate(inputs)]
    theirs = [
        t.detach().double().requires_grad_(i in grad_of) if _is_float(t) else t for i, t in enumerate(inputs)
    ]
    out = _as_tuple(op(*ours))
    out_ref = _as_tuple(ref(*theirs))
    for k, (o, r) in enumerate(zip(out, out_ref)):
        assert o.dtype == inputs[0].dtype, f"{label} output {k} dtype {o.dtype}, expected {inputs[0].dtype}"
        assert o.shape == r.shape, f"{label} output {k} shape {tuple(o.shape)} vs {tuple(r.shape)}"
        err = rel_err(o, r)
        assert err <= tol, f"{label} output {k}: rel err {err:.3g} > {tol} (seed {seed})"
    if not grad_of:
        return
    upstream = [torch.randn(o.shape, dtype=torch.float64, device=o.device).to(o.dtype) for o in out]
    torch.autograd.backward(list(out), [g for g in upstream])
    torch.autograd.backward(list(out_ref), [g.double() for g in upstream])
    for i in grad_of:
        g, g_ref = ours[i].grad, theirs[i].grad
        assert g is not None, f"{label} no gradient for input {i}"
        assert g.dtype == inputs[i].dtype and g.shape == inputs[i].shape, f"{label} grad {i} dtype/shape"
        err = rel_err(g, g_ref)
        assert err <= tol, f"{label} grad of input {i}: rel err {err:.3g} > {tol} (seed {seed})"


def _is_float(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()
