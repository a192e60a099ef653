"""nn.Module wrappers over normia.ops for the models: the parameters live here, the math in the kernels."""

from __future__ import annotations

import math

import torch
from torch import nn

from . import functional as F


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale; forward(x, residual) also fuses the residual add (returns (y, x + r))."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is None:
            return F.rms_norm(x, self.weight, self.eps)
        return F.add_rms_norm(x, residual, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, bias={self.bias is not None}"


class SwiGLUMLP(nn.Module):
    """LLaMA's feed-forward block: down(silu(gate(x)) * up(x)), with Hugging Face's parameter names."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.swiglu(self.gate_proj(x), self.up_proj(x)))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (rotate-half). forward(x (B, H, T, D), offset=0) rotates positions offset..offset+T.

    The cos/sin tables are fp32, built per device on first use and kept out of the state dict and out of
    `module.to(dtype)` (a bf16 table would lose the positions' precision).
    """

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding: head_dim must be even, got {head_dim}")
        if max_seq_len < 1:
            raise ValueError(f"RotaryEmbedding: max_seq_len must be >= 1, got {max_seq_len}")
        self.head_dim, self.max_seq_len, self.base = head_dim, max_seq_len, base
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (max_seq_len, head_dim) fp32, in the Hugging Face layout (halves repeated)."""
        if device not in self._tables:
            inv_freq = 1.0 / (
                self.base ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim)
            )
            angles = torch.outer(torch.arange(self.max_seq_len, dtype=torch.float64), inv_freq)
            emb = torch.cat((angles, angles), dim=-1)
            self._tables[device] = (emb.cos().float().to(device), emb.sin().float().to(device))
        return self._tables[device]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"RotaryEmbedding: x must be (batch, heads, seq, {self.head_dim}), got {tuple(x.shape)}"
            )
        seq = x.shape[2]
        if offset < 0 or offset + seq > self.max_seq_len:
            raise ValueError(
                f"RotaryEmbedding: positions {offset}..{offset + seq - 1} exceed max_seq_len={self.max_seq_len}; "
                "build it with a larger max_seq_len"
            )
        cos, sin = self.tables(x.device)
        return F.apply_rope(x, cos[offset : offset + seq], sin[offset : offset + seq])

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, max_seq_len={self.max_seq_len}, base={self.base}"


class LMHeadLoss(nn.Module):
    """The output projection and its cross-entropy, fused: the (tokens, vocab) logits are never materialised.

    `weight` is (vocab_size, dim), the layout of nn.Embedding.weight, so it can be tied:
    `head.weight = embedding.weight`. Use `logits(hidden)` when the logits themselves are needed (generation).
    """

    def __init__(self, dim: int, vocab_size: int, bias: bool = False, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))
        self.bias = nn.Parameter(torch.empty(vocab_size)) if bias else None
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default init range
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, hidden: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.fused_linear_cross_entropy(
            hidden, self.weight, target, self.bias, self.ignore_index, reduction
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden, self.weight, self.bias)

    def extra_repr(self) -> str:
        vocab, dim = self.weight.shape
        return (
            f"dim={dim}, vocab_size={vocab}, bias={self.bias is not None}, ignore_index={self.ignore_index}"
        )
