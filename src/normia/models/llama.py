"""A LLaMA-style decoder-only language model on normia.ops: RMSNorm, RoPE, SwiGLU, grouped-query attention.

Pre-norm blocks; attention through torch's scaled_dot_product_attention (flash/memory-efficient kernels on GPUs, the
math path on CPUs) with `is_causal` and grouped-query heads; the residual add before the MLP norm is fused with the
norm (`add_rms_norm`); the output projection and its cross-entropy are fused (`LMHeadLoss`: the (tokens, vocab) logits
are never materialised during training). Every op goes through normia.ops, so `kernels=torch|triton` swaps the
implementation without touching this file. Imports only torch and normia.ops (benchmarks run it without Lightning).

FLOPs per token (training: forward + backward), the PaLM/Chinchilla convention, documented in `flops_per_token`:
    6 * N  +  12 * n_layers * seq_len * dim
where N = non-embedding parameters + vocab * dim (the output projection is a matmul whether or not it is tied; the
input embedding is a lookup, not counted). The attention term counts QK^T and AV over the full T x T square (causal
masking is not subtracted), which is what torch.utils.flop_counter reports for scaled_dot_product_attention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from normia.models.baseline import UnigramBaseline
from normia.ops.modules import LMHeadLoss, RMSNorm, RotaryEmbedding, SwiGLUMLP

_SDPA_HAS_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (
    2,
    5,
)  # enable_gqa since 2.5


def default_ffn_hidden(dim: int, multiple_of: int = 64) -> int:
    """LLaMA's rule: 2/3 of 4*dim (same parameter count as a 4*dim GELU MLP), rounded up to `multiple_of`."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


class Attention(nn.Module):
    """Multi-head causal self-attention with n_kv_heads <= n_heads key/value heads (grouped-query attention)."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = dim // n_heads
        self.q_proj = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, dim, bias=False)

    def forward(self, x: Tensor, rope: RotaryEmbedding) -> Tensor:
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope(q), rope(k)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if self.n_kv_heads == self.n_heads:
            out = sdpa(q, k, v, is_causal=True)
        elif _SDPA_HAS_GQA:
            out = sdpa(q, k, v, is_causal=True, enable_gqa=True)
        else:  # torch < 2.5
            repeat = self.n_heads // self.n_kv_heads
            out = sdpa(q, k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1), is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))


class Block(nn.Module):
    """x -> x + attn(norm(x)) -> h + mlp(norm(h)), the second residual add fused into the MLP's norm."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, ffn_hidden: int, norm_eps: float) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(dim, norm_eps)
        self.attn = Attention(dim, n_heads, n_kv_heads)
        self.mlp_norm = RMSNorm(dim, norm_eps)
        self.mlp = SwiGLUMLP(dim, ffn_hidden)

    def forward(self, x: Tensor, rope: RotaryEmbedding) -> Tensor:
        attn_out = self.attn(self.attn_norm(x), rope)
        normed, h = self.mlp_norm(attn_out, x)  # (rms_norm(attn_out + x), attn_out + x)
        return h + self.mlp(normed)


class Llama(UnigramBaseline):
    """Tokens (B, T) -> hidden states (B, T, dim) after the final norm; `loss(batch)` for training."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        ffn_hidden: int | None = None,
        max_seq_len: int = 2048,
        tie_embeddings: bool = True,
        activation_checkpointing: bool = False,
        rope_base: float = 10000.0,
        norm_eps: float = 1e-6,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.init_unigram()  # validation logs loss_unigram, the training split's zero-context baseline
        n_kv_heads = n_kv_heads or n_heads
        problems = []
        if min(vocab_size, dim, n_layers, n_heads, n_kv_heads, max_seq_len) < 1:
            problems.append("vocab_size, dim, n_layers, n_heads, n_kv_heads and max_seq_len must be >= 1")
        elif dim % n_heads:
            problems.append(f"dim ({dim}) must be a multiple of n_heads ({n_heads})")
        elif n_heads % n_kv_heads:
            problems.append(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
        elif (dim // n_heads) % 2:
            problems.append(f"the head size dim/n_heads ({dim // n_heads}) must be even for RoPE")
        if problems:
            raise ValueError(f"Llama: {problems[0]}")
        self.vocab_size, self.dim, self.n_layers = vocab_size, dim, n_layers
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.ffn_hidden = ffn_hidden or default_ffn_hidden(dim)
        self.max_seq_len, self.tie_embeddings = max_seq_len, tie_embeddings
        self.activation_checkpointing = activation_checkpointing

        self.embed = nn.Embedding(vocab_size, dim)
        self.rope = RotaryEmbedding(dim // n_heads, max_seq_len, rope_base)
        self.layers = nn.ModuleList(
            Block(dim, n_heads, n_kv_heads, self.ffn_hidden, norm_eps) for _ in range(n_layers)
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.head = LMHeadLoss(dim, vocab_size)
        self.reset_parameters(init_std)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def reset_parameters(self, std: float = 0.02) -> None:
        """Normal(0, std) weights; the projections that write into the residual stream (o_proj, down_proj) are
        scaled by 1/sqrt(2 * n_layers) so the residual's variance does not grow with depth (GPT-2)."""
        for name, param in self.named_parameters():
            if param.dim() < 2:
                continue  # norm scales stay at one
            scale = (
                1.0 / math.sqrt(2 * self.n_layers)
                if name.endswith(("o_proj.weight", "down_proj.weight"))
                else 1.0
            )
            nn.init.normal_(param, mean=0.0, std=std * scale)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"Llama expects tokens of shape (batch, seq), got {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_seq_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_seq_len={self.max_seq_len}")
        x = self.embed(tokens)
        for layer in self.layers:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, self.rope, use_reentrant=False)
            else:
                x = layer(x, self.rope)
        return self.norm(x)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean next-token cross-entropy (nats); metric bits_per_token (bits per byte for a byte-level model)."""
        inputs, targets = batch
        hidden = self(inputs)
        loss = self.head(hidden.flatten(0, 1), targets.flatten())
        return loss, self.with_unigram({"bits_per_token": loss.detach() / math.log(2)})

    def logits(self, tokens: Tensor) -> Tensor:
        return self.head.logits(self(tokens))

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample continuations of prompt (B, T) (no KV cache: for demos and tests, not for serving)."""
        tokens = prompt
        for _ in range(max_new_tokens):
            logits = self.logits(tokens[:, -self.max_seq_len :])[:, -1].float()
            if temperature <= 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            tokens = torch.cat([tokens, nxt], dim=1)
        return tokens

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Unique parameters (a tied matrix counts once); exclude_embeddings drops the vocab x dim input embedding
        (and so, when tied, the shared output matrix too: Kaplan et al.'s non-embedding N)."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if exclude_embeddings:
            total -= self.embed.weight.numel()
            if not self.tie_embeddings:
                total -= self.head.weight.numel()
        return total

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token: 6 * (non-embedding params + vocab * dim) + 12 * n_layers * seq_len * dim."""
        matmul_params = self.num_params(exclude_embeddings=True) + self.vocab_size * self.dim
        return 6 * matmul_params + 12 * self.n_layers * seq_len * self.dim
