"""View any tensor as a 2-D (rows, last dim) matrix with unit column stride, copying only when it must."""

from __future__ import annotations

import torch


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """(..., N) -> (rows, N) with stride(-1) == 1; a row-strided view (e.g. a slice) is kept without a copy."""
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t.reshape(-1, t.shape[-1])
