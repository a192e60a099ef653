"""Which implementation runs: Triton kernels or the PyTorch references.

`auto` (default): Triton for CUDA tensors when triton imports, the reference otherwise. `triton` / `torch`
force one; they come from `set_backend()` (e.g. the `kernels` config key) or else the NORMIA_KERNELS env
variable. Forcing `triton` on CPU tensors is an error unless Triton's interpreter is on
(TRITON_INTERPRET=1, used by tests).
"""

from __future__ import annotations

import os

import torch

from normia.kernels._triton import HAS_TRITON, interpreting

BACKENDS = ("auto", "triton", "torch")
ENV_VAR = "NORMIA_KERNELS"
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_override: str | None = None


def _check(name: str, source: str) -> str:
    value = name.strip().lower()
    if value not in BACKENDS:
        raise ValueError(f"{source}={name!r} is not a kernel backend; use one of {', '.join(BACKENDS)}")
    return value


def set_backend(name: str | None) -> None:
    """Force a backend for this process ('auto', 'triton', 'torch'); None goes back to NORMIA_KERNELS / auto."""
    global _override
    _override = None if name is None else _check(name, "set_backend(name)")


def get_backend() -> str:
    if _override is not None:
        return _override
    return _check(os.environ.get(ENV_VAR, "auto") or "auto", ENV_VAR)


def use_triton(fn: str, t: torch.Tensor) -> bool:
    """Decide for one call, from its main input tensor; raises when `triton` is forced but cannot run."""
    backend = get_backend()
    if backend == "torch":
        return False
    if backend == "auto":
        return HAS_TRITON and t.is_cuda and t.dtype in TRITON_DTYPES
    if not HAS_TRITON:
        raise RuntimeError(f"{fn}: kernel backend 'triton' is forced but triton is not installed; "
                           f"pip install triton, or use {ENV_VAR}=auto")  # fmt: skip
    if not (t.is_cuda or interpreting()):
        raise RuntimeError(f"{fn}: kernel backend 'triton' needs CUDA tensors, got a {t.device} tensor; "
                           f"use {ENV_VAR}=auto (reference on CPU) or set TRITON_INTERPRET=1")  # fmt: skip
    if t.dtype not in TRITON_DTYPES:
        raise TypeError(f"{fn}: the Triton kernels take float32, float16 or bfloat16, got {t.dtype}; "
                        f"use {ENV_VAR}=auto to run {t.dtype} through the PyTorch reference")  # fmt: skip
    return True
