"""Hugging Face LlamaForCausalLM <-> normia's Llama: equal logits (fp32, 1e-5) with GQA and tied or untied
embeddings, sharded safetensors, bitwise round trips, equal losses, and refusals of variants normia does not run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from normia.errors import UserError
from normia.models.hf.llama import PretrainedLlama, llama_from_hf, save_llama_as_hf
from normia.models.llama import Llama

VOCAB = 97


def hf_llama(folder: Path, tie: bool, n_kv_heads: int, seed: int = 0, shard: str | None = None, **extra):
    """A random LlamaForCausalLM saved to folder; returned in eval mode."""
    from tiny_models import llama_config
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(VOCAB, tie, n_kv_heads, **extra)).eval()
    model.save_pretrained(str(folder), **({"max_shard_size": shard} if shard else {}))
    return model


def random_tokens(batch: int = 3, seq: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1], ids=["mha", "gqa2", "mqa"])
def test_hf_llama_gives_the_same_logits_in_normia(tmp_path: Path, tie: bool, n_kv_heads: int) -> None:
    hf = hf_llama(tmp_path, tie, n_kv_heads)
    ours = llama_from_hf(tmp_path).eval()
    assert isinstance(ours, Llama) and ours.n_kv_heads == n_kv_heads and ours.tie_embeddings == tie
    assert (ours.head.weight is ours.embed.weight) == tie
    tokens = random_tokens()
    with torch.no_grad():
        expected, got = hf(tokens).logits, ours.logits(tokens)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_the_training_loss_is_the_same_cross_entropy(tmp_path: Path) -> None:
    hf = hf_llama(tmp_path, tie=False, n_kv_heads=2)
    ours = llama_from_hf(tmp_path).eval()
    tokens = random_tokens(seq=33)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(hf(inputs).logits.flatten(0, 1), targets.flatten())
        loss, metrics = ours.loss((inputs, targets))
    assert abs(loss.item() - expected.item()) < 1e-5
    assert metrics["bits_per_token"].item() == pytest.approx(loss.item() / math.log(2))


def test_sharded_safetensors_load_like_one_file(tmp_path: Path) -> None:
    hf = hf_llama(tmp_path, tie=False, n_kv_heads=2, shard="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (
        tmp_path / "model.safetensors"
    ).exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    tokens = random_tokens()
    with torch.no_grad():
        torch.testing.assert_close(
            llama_from_hf(tmp_path).eval().logits(tokens), hf(tokens).logits, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_normia_to_hf_and_back_keeps_every_weight_bit_for_bit(tmp_path: Path, tie: bool) -> None:
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    ours = Llama(
        VOCAB,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=64,
        tie_embeddings=tie,
        rope_base=5000.0,
        norm_eps=1e-5,
    ).eval()
    save_llama_as_hf(ours, tmp_path / "hf")
    has_head = "lm_head.weight" in _safetensor_names(tmp_path / "hf" / "model.safetensors")
    assert has_head != tie  # Transformers' own convention: a tied head is not stored
    back = llama_from_hf(tmp_path / "hf")
    for (name, a), (other, b) in zip(ours.state_dict().items(), back.state_dict().items(), strict=True):
        assert name == other and torch.equal(a, b), name
    reloaded = LlamaForCausalLM.from_pretrained(str(tmp_path / "hf"), local_files_only=True).eval()
    tokens = random_tokens(seq=30)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, ours.logits(tokens), rtol=0, atol=1e-5)


def _safetensor_names(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return set(handle.keys())


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
            "rope scaling 'linear'",
        ),
        ({"attention_bias": True}, "attention biases"),
        ({"hidden_act": "gelu"}, "activation gelu"),
    ],
    ids=["rope-scaling", "attention-bias", "gelu"],
)
def test_llama_variants_normia_does_not_implement_are_refused(
    tmp_path: Path, extra: dict, words: str
) -> None:
    hf_llama(tmp_path, tie=False, n_kv_heads=2, **extra)
    with pytest.raises(UserError, match=words) as info:
        PretrainedLlama(str(tmp_path))
    assert "model=hf_causal_lm" in str(info.value) and "\n" not in str(info.value)


def test_a_non_llama_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="model_type 'bert' is not 'llama'"):
        PretrainedLlama(str(tmp_path))
