"""Triton import shim and launch settings shared by every kernel file.

Why: `normia.ops` must import with torch alone. When triton is missing, `triton.jit` becomes a decorator that
keeps the Python function (never launched) so the kernel files still import and their PyTorch references work.
Nothing here touches CUDA at import time.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only on machines without triton
    HAS_TRITON = False

    class _MissingTriton:
        """Stands in for `triton` / `triton.language` so `@triton.jit` and `tl.constexpr` annotations parse."""

        constexpr = Any

        @staticmethod
        def jit(fn=None, **_kwargs):
            return fn if fn is not None else (lambda f: f)

        @staticmethod
        def cdiv(a: int, b: int) -> int:
            return -(-a // b)

        @staticmethod
        def next_power_of_2(n: int) -> int:
            return 1 << max(0, (n - 1).bit_length())

    triton = _MissingTriton()  # type: ignore[assignment]
    tl = _MissingTriton()  # type: ignore[assignment]

__all__ = [
    "HAS_TRITON",
    "LIMITS",
    "interpreting",
    "max_warps",
    "next_pow2",
    "num_programs",
    "row_settings",
    "tl",
    "triton",
    "warps",
]


class _Limits:
    """Block-size ceilings. Tests lower them (e.g. to 64) to drive the multi-block loops on small shapes."""

    def __init__(self) -> None:
        self.max_fused_row = 16384  # a row up to this many elements is normalised from registers in one pass
        self.loop_block = 4096  # block width of the looping path for longer rows
        self.ce_block = 8192  # vocabulary block of the cross-entropy kernels
        self.elementwise_block = 1024  # elements per program of the elementwise kernels
        self.flce_chunk_rows = 0  # tokens per fused-linear-cross-entropy chunk; 0 = automatic
        self.flce_cpu_chunk_elements = 2**25  # on CPUs, chunks hold at least this many logits


LIMITS = _Limits()


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def max_warps() -> int:
    """The most warps a program may have: 1024 threads, i.e. 32 warps of 32 (NVIDIA) or 16 wavefronts of 64 (AMD).

    Read from the torch build (torch.version.hip), which touches no device: a ROCm build runs on AMD GPUs only.
    """
    return 16 if getattr(torch.version, "hip", None) else 32


def warps(n: int) -> int:
    """num_warps n, clamped so a program never exceeds 1024 threads on this build's GPUs (64-wide on AMD)."""
    return min(n, max_warps())


def row_settings(n_cols: int) -> tuple[int, bool, int]:
    """(BLOCK, SINGLE_BLOCK, num_warps) for a kernel that walks one row of `n_cols` elements."""
    if n_cols <= LIMITS.max_fused_row:
        block, single = next_pow2(n_cols), True
    else:
        block, single = LIMITS.loop_block, False
    num_warps = 4 if block <= 1024 else 8 if block <= 4096 else 16
    return block, single, warps(num_warps)


@functools.lru_cache(maxsize=16)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_programs(device: torch.device, n_rows: int, n_cols: int) -> int:
    """Program count of a persistent row kernel (backward of the norms).

    On a GPU: enough programs to fill the SMs with short rows (up to 16 per SM at 1k columns, 2 at 8k+), so
    the per-program fp32 partials of dw stay a few % of the input. Under the interpreter: a handful.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        per_sm = max(2, min(16, 16384 // next_pow2(n_cols)))
        return max(1, min(n_rows, _sm_count(index) * per_sm))
    return max(1, min(n_rows, 4))
