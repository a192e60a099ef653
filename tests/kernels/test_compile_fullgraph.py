"""A LLaMA built on normia.ops compiles as one graph (fullgraph=True) and matches eager, with the reference kernels.

backend="aot_eager" traces forward and backward like inductor does, without inductor's C++ compile (seconds on CPU).
A graph break raises under fullgraph=True, so any host read or untraceable call in the ops fails this test.
"""

from __future__ import annotations

import pytest
import torch

import normia.ops as ops
from normia.models.llama import Llama


@pytest.fixture(autouse=True)
def _reference_backend():
    ops.set_backend("torch")
    ops.clear_deferred_errors()
    torch._dynamo.reset()
    yield
    ops.set_backend(None)
    ops.clear_deferred_errors()
    torch._dynamo.reset()


def _tiny_llama() -> Llama:
    # llama_tiny's shapes with one layer: every op (norms, RoPE, SwiGLU, fused loss) appears
    torch.manual_seed(0)
    return Llama(vocab_size=256, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, max_seq_len=64)


def test_llama_compiles_fullgraph_and_matches_eager():
    model = _tiny_llama()
    tokens = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(2))
    targets[0, :3] = -100  # ignored positions go through the same graph
    eager_loss, _ = model.loss((tokens, targets))
    eager_loss.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    compiled = torch.compile(model.loss, fullgraph=True, backend="aot_eager")
    loss, _ = compiled((tokens, targets))
    loss.backward()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-6, atol=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, eager_grads[name], rtol=1e-5, atol=1e-6, msg=name)

    # under compile a bad target cannot raise at the call: it is recorded in the graph and raised afterwards
    targets[1, 5] = 300
    compiled((tokens, targets))
    with pytest.raises(ValueError, match="fused_linear_cross_entropy: target holds 300 at flat index 21"):
        ops.raise_deferred_errors()
