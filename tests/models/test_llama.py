"""The LLaMA-style decoder: shapes, causality, GQA, tying, checkpointing, the fused loss, parameter and FLOP counts."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from normia.configs import __path__ as _configs_path  # type: ignore[attr-defined]
from normia.models.llama import Llama, default_ffn_hidden

CONFIGS = _configs_path[0]


def tiny(**kwargs) -> Llama:
    torch.manual_seed(0)
    args = {"vocab_size": 97, "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 32}
    args.update(kwargs)
    return Llama(**args)


def batch(b: int = 2, t: int = 16, vocab: int = 97) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (b, t + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def test_forward_shape_and_loss_near_uniform_at_init() -> None:
    model = tiny()
    x, y = batch()
    assert model(x).shape == (2, 16, 64)
    loss, metrics = model.loss((x, y))
    assert loss.ndim == 0 and abs(loss.item() - math.log(97)) < 0.3
    assert metrics["bits_per_token"].item() == pytest.approx(loss.item() / math.log(2))


def test_causal_a_future_token_does_not_change_the_past() -> None:
    model = tiny().eval()
    x, _ = batch()
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 97
    a, b = model(x), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_grouped_query_attention_equals_repeated_heads(n_kv_heads: int) -> None:
    """GQA through SDPA must equal full multi-head attention with each key/value head repeated."""
    model = tiny(n_kv_heads=n_kv_heads).eval()
    x, _ = batch()
    attn = model.layers[0].attn
    h = model.embed(x)
    out = attn(h, model.rope)
    q = attn.q_proj(h).view(2, 16, 4, 16).transpose(1, 2)
    k = attn.k_proj(h).view(2, 16, n_kv_heads, 16).transpose(1, 2)
    v = attn.v_proj(h).view(2, 16, n_kv_heads, 16).transpose(1, 2)
    q, k = model.rope(q), model.rope(k)
    rep = 4 // n_kv_heads
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scores = (q @ k.transpose(-1, -2)) / 4.0
    scores = scores.masked_fill(torch.ones(16, 16, dtype=torch.bool).triu(1), float("-inf"))
    expected = attn.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 16, 64))
    assert torch.allclose(out, expected, atol=1e-5)


def test_fused_loss_equals_plain_cross_entropy_with_gradients() -> None:
    model = tiny()
    x, y = batch()
    loss, _ = model.loss((x, y))
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    reference = torch.nn.functional.cross_entropy(model.logits(x).flatten(0, 1), y.flatten())
    reference.backward()
    assert torch.allclose(loss, reference, atol=1e-5)
    for name, param in model.named_parameters():
        assert torch.allclose(fused[name], param.grad, atol=1e-5), name


def test_tied_and_untied_embeddings_and_parameter_counts() -> None:
    tied, untied = tiny(tie_embeddings=True), tiny(tie_embeddings=False)
    assert tied.head.weight is tied.embed.weight
    assert untied.head.weight is not untied.embed.weight
    assert untied.num_params() - tied.num_params() == 97 * 64
    assert tied.num_params(exclude_embeddings=True) == untied.num_params(exclude_embeddings=True)
    per_layer = 64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * default_ffn_hidden(64) + 2 * 64
    assert tied.num_params(exclude_embeddings=True) == 2 * per_layer + 64


def test_activation_checkpointing_gives_the_same_loss_and_gradients() -> None:
    plain, ckpt = tiny(), tiny(activation_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x, y = batch()
    for model in (plain, ckpt):
        model.train()
        model.loss((x, y))[0].backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


@pytest.mark.parametrize("tie", [True, False])
def test_flops_per_token_matches_torch_flop_counter(tie: bool) -> None:
    """6N + 12*L*T*d against torch.utils.flop_counter over forward + backward (math SDPA so attention is counted;
    plain logits so the counter sees the head's matmuls). The rest is norm weights, which do no matmul."""
    model = tiny(tie_embeddings=tie, max_seq_len=64)
    x, y = batch(t=64)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(model.logits(x).flatten(0, 1), y.flatten())
        loss.backward()
    expected = model.flops_per_token(64) * x.numel()
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(
    ("name", "params", "non_embedding"),
    [("llama_125m", 100_092_672, 75_516_672), ("llama_1b", 1_235_814_400, 973_146_112)],
)
def test_size_presets_have_the_documented_parameter_counts(
    name: str, params: int, non_embedding: int
) -> None:
    with open(f"{CONFIGS}/model/{name}.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("_target_")
    with torch.device("meta"):
        model = Llama(**cfg)
    assert model.num_params() == params
    assert model.num_params(exclude_embeddings=True) == non_embedding


def test_generate_and_bad_arguments() -> None:
    model = tiny().eval()
    out = model.generate(torch.zeros(1, 3, dtype=torch.long), max_new_tokens=5, temperature=0.8, top_k=10)
    assert out.shape == (1, 8)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        Llama(vocab_size=10, dim=30, n_layers=1, n_heads=4)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        Llama(vocab_size=10, dim=32, n_layers=1, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        model(torch.zeros(1, 40, dtype=torch.long))


def _autocast_loss_and_grads(model: Llama, fused: bool) -> tuple[torch.Tensor, dict]:
    x, y = batch()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if fused:
            loss, _ = model.loss((x, y))
        else:
            loss = torch.nn.functional.cross_entropy(model.logits(x).flatten(0, 1), y.flatten())
    loss.backward()
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_bf16_autocast_trains_with_fp32_weights_like_the_unfused_model() -> None:
    """bf16-mixed (Lightning's and the benchmark's precision): a bf16 block output meets the fp32 residual stream
    in add_rms_norm and fp32 hidden states meet the head's matmul under autocast. Both used to raise."""
    model = tiny()
    loss, grads = _autocast_loss_and_grads(model, fused=True)
    assert loss.dtype == torch.float32  # as autocast's cross_entropy
    ref_loss, ref_grads = _autocast_loss_and_grads(model, fused=False)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=2e-2)
    for name, grad in ref_grads.items():
        assert grads[name].dtype == torch.float32, name  # gradients in the parameters' dtype
        scale = grad.abs().max().clamp_min(1e-12)
        assert ((grads[name] - grad).abs().max() / scale).item() < 0.1, name
