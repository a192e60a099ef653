"""Issue 25 D: a language model's loss comes with its unigram baseline and the sizes of its splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normia.data import unigram
from normia.data.token_shards import ArrayTokens
from normia.data.unigram import SplitSizes, count_tokens, unigram_cross_entropy


def test_the_cross_entropy_of_a_uniform_unigram_is_ln_v() -> None:
    counts = np.full(256, 1000)
    assert unigram_cross_entropy(counts, counts) == pytest.approx(math.log(256), rel=1e-9)
    assert unigram_cross_entropy(counts, np.zeros(256)) == 0.0


def test_a_token_unseen_in_training_costs_a_finite_smoothed_loss() -> None:
    train, val = np.array([10, 0]), np.array([0, 1])
    assert unigram_cross_entropy(train, val) == pytest.approx(-math.log(0.5 / 11))


def test_counting_a_large_split_reads_evenly_spaced_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unigram, "SAMPLE_TOKENS", 1000)
    monkeypatch.setattr(unigram, "CHUNK_TOKENS", 100)
    tokens = ArrayTokens(np.arange(10_000) % 7, 7)
    counts, counted = count_tokens(tokens, 0, 10_000, 7)
    assert counted == 1000 and counts.sum() == 1000
    counts, counted = count_tokens(tokens, 0, 500, 7)
    assert counted == 500 and list(counts) == list(np.bincount(np.arange(500) % 7))
    sizes = SplitSizes(10_000, 1_000, 150, 15, 64, 1.9, counted_tokens=1_000)
    assert (
        "estimated on 1.00k" in sizes.describe()
        and "10.00k training tokens (150 windows of 64)" in sizes.describe()
    )


def test_the_llama_logs_its_baseline_in_validation_only() -> None:
    from normia.models.llama import Llama

    model = Llama(vocab_size=16, dim=16, n_layers=1, n_heads=2, max_seq_len=8)
    batch = (torch.randint(0, 16, (2, 8)), torch.randint(0, 16, (2, 8)))
    model.eval()
    assert "loss_unigram" not in model.loss(batch)[1]  # unknown until the data module says
    model.set_data_facts(unigram_loss=2.5)
    assert float(model.loss(batch)[1]["loss_unigram"]) == pytest.approx(2.5)
    model.train()
    assert "loss_unigram" not in model.loss(batch)[1]
    assert "unigram_loss" not in model.state_dict()  # not saved: the data module gives it again
