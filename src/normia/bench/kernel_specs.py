"""The kernels `normia bench kernels` measures: how to make inputs for a shape, the eager PyTorch version people
write today, and the fewest bytes (or FLOPs) each pass must move, which turns a time into a fraction of the limit.

Minimal bytes count each input read once and each output written once (a fused kernel's floor); for fwd+bwd they
are the sum of the two passes. fused_linear_cross_entropy is bound by its matmuls, so it counts FLOPs instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod

import torch
import torch.nn.functional as F

Shape = tuple[int, ...]
Inputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class KernelSpec:
    name: str
    dims: tuple[str, ...]  # meaning of each number of a shape, e.g. ("rows", "hidden")
    make_inputs: Callable[[Shape, torch.dtype, torch.device], Inputs]
    differentiable: tuple[str, ...]  # inputs that get gradients
    eager: Callable[..., object]
    bound: str  # "memory" (fraction of copy bandwidth) or "compute" (fraction of matmul rate)
    work_fwd: Callable[
        [Shape, int], float
    ]  # bytes (memory-bound) or FLOPs (compute-bound) of the forward pass
    work_bwd: Callable[[Shape, int], float]
    gpu_shapes: tuple[Shape, ...]
    cpu_shapes: tuple[Shape, ...]
    extra_bytes: Callable[[Shape, int], float] = field(default=lambda shape, size: 0.0)  # eager temporaries

    def memory_needed(self, shape: Shape, itemsize: int) -> float:
        """A generous estimate of the bytes one fwd+bwd needs, to skip shapes that cannot fit before trying:
        inputs and outputs, as many again for their gradients, and the eager version's temporaries."""
        if self.bound == "compute":  # fused_linear_cross_entropy: hidden and weight, the loss is a scalar
            n, h, v = shape
            io = (n * h + v * h) * itemsize
        else:
            io = self.work_fwd(shape, itemsize)
        return 2 * io + self.extra_bytes(shape, itemsize)


def _randn(*shape: int, dtype: torch.dtype, device: torch.device, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(grad)


# --- eager PyTorch, as written in Hugging Face / nanoGPT-style code ---------------------------------------------


def eager_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def eager_add_rms_norm(x, residual, weight, eps: float = 1e-6):  # type: ignore[no-untyped-def]
    s = x + residual
    return eager_rms_norm(s, weight, eps), s


def eager_layer_norm(x, weight, bias, eps: float = 1e-5):  # type: ignore[no-untyped-def]
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def eager_swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def eager_apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def eager_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target)


def eager_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    return F.cross_entropy(hidden @ weight.t(), target)


# --- inputs --------------------------------------------------------------------------------------------------------


def _rows_inputs(*names: str, weight: bool = False, bias: bool = False):  # type: ignore[no-untyped-def]
    def make(shape: Shape, dtype: torch.dtype, device: torch.device) -> Inputs:
        rows, hidden = shape
        out = {n: _randn(rows, hidden, dtype=dtype, device=device) for n in names}
        if weight:
            out["weight"] = (1 + 0.1 * torch.randn(hidden, dtype=dtype, device=device)).requires_grad_()
        if bias:
            out["bias"] = _randn(hidden, dtype=dtype, device=device)
        return out

    return make


def _rope_inputs(shape: Shape, dtype: torch.dtype, device: torch.device) -> Inputs:
    b, h, t, d = shape
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(t, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    return {
        "x": _randn(b, h, t, d, dtype=dtype, device=device),
        "cos": emb.cos().to(dtype),
        "sin": emb.sin().to(dtype),
    }


def _ce_inputs(shape: Shape, dtype: torch.dtype, device: torch.device) -> Inputs:
    n, v = shape
    return {
        "logits": _randn(n, v, dtype=dtype, device=device),
        "target": torch.randint(0, v, (n,), device=device),
    }


def _flce_inputs(shape: Shape, dtype: torch.dtype, device: torch.device) -> Inputs:
    n, h, v = shape
    return {
        "hidden": _randn(n, h, dtype=dtype, device=device),
        "weight": (torch.randn(v, h, dtype=dtype, device=device) / h**0.5).requires_grad_(),
        "target": torch.randint(0, v, (n,), device=device),
    }


def _mn(shape: Shape) -> tuple[int, int]:
    return shape[0], shape[1]


_NORM_SHAPES_GPU = ((4096, 1024), (4096, 4096), (16384, 4096), (16384, 8192), (32768, 16384))
_NORM_SHAPES_CPU = ((256, 1024), (1024, 4096))

KERNELS: dict[str, KernelSpec] = {
    s.name: s
    for s in [
        KernelSpec(
            "rms_norm", ("rows", "hidden"), _rows_inputs("x", weight=True), ("x", "weight"), eager_rms_norm,
            "memory",
            lambda sh, b: (2 * prod(sh) + sh[1]) * b,
            lambda sh, b: (3 * prod(sh) + 2 * sh[1]) * b,
            _NORM_SHAPES_GPU, _NORM_SHAPES_CPU,
            extra_bytes=lambda sh, b: 3 * prod(sh) * 4,
        ),
        KernelSpec(
            "add_rms_norm", ("rows", "hidden"), _rows_inputs("x", "residual", weight=True),
            ("x", "residual", "weight"), eager_add_rms_norm, "memory",
            lambda sh, b: (4 * prod(sh) + sh[1]) * b,
            lambda sh, b: (4 * prod(sh) + 2 * sh[1]) * b,
            _NORM_SHAPES_GPU, _NORM_SHAPES_CPU,
            extra_bytes=lambda sh, b: 3 * prod(sh) * 4,
        ),
        KernelSpec(
            "layer_norm", ("rows", "hidden"), _rows_inputs("x", weight=True, bias=True), ("x", "weight", "bias"),
            eager_layer_norm, "memory",
            lambda sh, b: (2 * prod(sh) + 2 * sh[1]) * b,
            lambda sh, b: (3 * prod(sh) + 4 * sh[1]) * b,
            _NORM_SHAPES_GPU, _NORM_SHAPES_CPU,
        ),
        KernelSpec(
            "swiglu", ("rows", "hidden"), _rows_inputs("gate", "up"), ("gate", "up"), eager_swiglu, "memory",
            lambda sh, b: 3 * prod(sh) * b,
            lambda sh, b: 5 * prod(sh) * b,
            ((4096, 4096), (8192, 11008), (16384, 14336)), ((256, 1024), (1024, 2816)),
            extra_bytes=lambda sh, b: 2 * prod(sh) * b,
        ),
        KernelSpec(
            "apply_rope", ("batch", "heads", "seq", "head_dim"), _rope_inputs, ("x",), eager_apply_rope, "memory",
            lambda sh, b: (2 * prod(sh) + 2 * sh[2] * sh[3]) * b,
            lambda sh, b: (2 * prod(sh) + 2 * sh[2] * sh[3]) * b,
            ((4, 32, 2048, 128), (8, 32, 4096, 128)), ((1, 4, 128, 64), (2, 8, 512, 64)),
            extra_bytes=lambda sh, b: 3 * prod(sh) * b,
        ),
        KernelSpec(
            "cross_entropy", ("tokens", "vocab"), _ce_inputs, ("logits",), eager_cross_entropy, "memory",
            lambda sh, b: prod(sh) * b + 8 * sh[0],
            lambda sh, b: 2 * prod(sh) * b + 8 * sh[0],
            ((8192, 32000), (8192, 128256), (16384, 128256)), ((256, 8000), (512, 32000)),
            extra_bytes=lambda sh, b: 2 * prod(sh) * 4,
        ),
        KernelSpec(
            "fused_linear_cross_entropy", ("tokens", "hidden", "vocab"), _flce_inputs, ("hidden", "weight"),
            eager_linear_cross_entropy, "compute",
            lambda sh, b: 2.0 * prod(sh),
            lambda sh, b: 4.0 * prod(sh),
            ((8192, 4096, 32000), (8192, 4096, 128256)), ((256, 256, 8000), (512, 512, 16000)),
            extra_bytes=lambda sh, b: 3 * sh[0] * sh[2] * 4,
        ),
    ]
}  # fmt: skip


def parse_shape(text: str) -> Shape:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"bad shape '{text}': write positive sizes joined by 'x', e.g. 4096x4096")
    return shape


def shape_label(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)
