"""LLaMA-style model sizes for the training and scaling benchmarks, from a CPU-tiny one to Llama-3.2-1B's shape.

Each size fixes the architecture and a default batch that fits one GPU (or a CPU for tiny/small); the model itself is
normia.models.llama.Llama, built with only torch (no hydra), so the benchmarks run on a bare GPU machine.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from normia.errors import UserError


@dataclass(frozen=True)
class ModelSize:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    batch_size: int  # sequences per step (per rank)
    seq_len: int


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(256, 64, 2, 4, 2, 192, 4, 64),
    "small": ModelSize(4096, 256, 4, 8, 4, 704, 8, 128),
    "125m": ModelSize(32000, 768, 12, 12, 12, 2048, 16, 1024),
    "350m": ModelSize(32000, 1024, 24, 16, 16, 2816, 16, 1024),
    "1b": ModelSize(128256, 2048, 16, 32, 8, 8192, 8, 2048),  # the shape of Llama-3.2-1B (1.24 B parameters)
}


def default_sizes(device: torch.device) -> list[str]:
    return ["tiny", "small"] if device.type == "cpu" else ["125m", "350m", "1b"]


def build_llama(size: str, seq_len: int, *, activation_checkpointing: bool = False) -> nn.Module:
    """An untrained normia Llama of the named size, on the CPU, in fp32."""
    try:
        from normia.models.llama import Llama
    except ImportError as err:
        raise UserError(
            f"normia.models.llama is not importable ({err}): the train benchmark needs it"
        ) from err
    s = SIZES[size]
    kwargs = {
        "vocab_size": s.vocab_size,
        "dim": s.dim,
        "n_layers": s.n_layers,
        "n_heads": s.n_heads,
        "n_kv_heads": s.n_kv_heads,
        "ffn_hidden": s.ffn_hidden,
        "max_seq_len": seq_len,
    }
    if activation_checkpointing:
        if "activation_checkpointing" not in inspect.signature(Llama).parameters:
            raise UserError("this normia Llama has no activation_checkpointing option: drop the flag")
        kwargs["activation_checkpointing"] = True
    return Llama(**kwargs)
