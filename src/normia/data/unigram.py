"""The unigram baseline of a language model's training split, and the sizes of its splits (issue 25 D).

A next-token loss of 3.2 nats means little alone: a model that ignores the context and always predicts the training
split's token frequencies p (add-1/2 smoothed, so that a token unseen in training costs a finite loss) reaches, on the
validation split, the cross-entropy L = -(1/N) sum_t ln p(x_t) (the zero-context unigram baseline of language
modelling, e.g. Jurafsky & Martin, Speech and Language Processing, 3rd ed., ch. 3). A model whose validation loss is
not below it has learnt nothing from the context. As classifiers log the accuracy of the majority class and
forecasters the error of the seasonal naive forecast, language models log `loss_unigram` (nats per token).

Counting reads the tokens once; over a large sharded corpus it reads evenly spaced chunks of at most
SAMPLE_TOKENS tokens in all (the estimate says so), not the whole split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_TOKENS = (
    20_000_000  # an estimate of a 32k-vocabulary distribution from 20M tokens is within ~0.01 nats
)
CHUNK_TOKENS = 1_000_000


@dataclass(frozen=True)
class SplitSizes:
    """Tokens and windows of the training and validation splits, and the validation loss of the training split's
    unigram model."""

    train_tokens: int
    val_tokens: int
    train_windows: int
    val_windows: int
    seq_len: int
    unigram_loss: float  # nats per validation token, under the training split's unigram distribution
    counted_tokens: int  # training tokens the distribution was counted on (< train_tokens: an estimate)

    def describe(self) -> str:
        """One line for the run's log."""
        estimate = (
            ""
            if self.counted_tokens >= self.train_tokens
            else f", estimated on {_short(self.counted_tokens)}"
        )
        return (
            f"data: {_short(self.train_tokens)} training tokens ({self.train_windows} windows of {self.seq_len}), "
            f"{_short(self.val_tokens)} validation ({self.val_windows} windows); unigram baseline (the training "
            f"split's token frequencies) on the validation split: loss {self.unigram_loss:.4f} nats = {self.unigram_loss / math.log(2):.3f} bits/token{estimate} "
            "(a validation loss not below it learnt nothing from the context)"
        )


def _short(count: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def unigram_cross_entropy(train_counts: np.ndarray, val_counts: np.ndarray) -> float:
    """Mean -ln p(token) (nats) over the tokens counted in `val_counts` (V,), p the add-1/2 smoothed distribution
    of `train_counts` (V,); 0 when there is no validation token."""
    total = float(val_counts.sum())
    if total <= 0:
        return 0.0
    smoothed = train_counts.astype(np.float64) + 0.5
    log_p = np.log(smoothed / smoothed.sum())
    return float(-(val_counts.astype(np.float64) * log_p).sum() / total)


def count_tokens(tokens: Any, begin: int, end: int, vocab_size: int) -> tuple[np.ndarray, int]:
    """(counts (vocab_size,), tokens counted) over tokens[begin:end] of a TokenShards/ArrayTokens (`read(a, b)`):
    all of them up to SAMPLE_TOKENS, else evenly spaced chunks of CHUNK_TOKENS summing to SAMPLE_TOKENS."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    length = max(0, end - begin)
    if length <= SAMPLE_TOKENS:
        spans = [(begin, end)]
    else:
        chunks = SAMPLE_TOKENS // CHUNK_TOKENS
        stride = length // chunks
        spans = [(begin + i * stride, begin + i * stride + CHUNK_TOKENS) for i in range(chunks)]
    counted = 0
    for start, stop in spans:
        part = tokens.read(start, stop)
        counts += np.bincount(part, minlength=vocab_size)[:vocab_size]
        counted += len(part)
    return counts, counted


class ReportsLanguageSplits:
    """Mixin for a language-model data module whose train_set/val_set are TokenWindows (data/token_shards.py) and
    which has `seq_len`: under a Trainer, its setup() calls `report_splits()`, which hands the model the unigram
    baseline (facts.share_with_model: `set_data_facts(unigram_loss=...)`) and prints the split sizes once (rank 0)."""

    train_set: Any
    val_set: Any
    seq_len: int
    _split_sizes: SplitSizes | None = None
    _splits_reported: bool = False

    def split_sizes(self) -> SplitSizes:
        """Tokens and windows per split and the unigram baseline, counted once."""
        if self._split_sizes is None:
            train, val = self.train_set, self.val_set
            vocab = int(train.tokens.vocab_size)
            counts, counted = count_tokens(train.tokens, train.begin, train.end, vocab)
            val_counts, _ = count_tokens(val.tokens, val.begin, val.end, vocab)
            self._split_sizes = SplitSizes(
                train.end - train.begin, val.end - val.begin, len(train), len(val), int(self.seq_len),
                unigram_cross_entropy(counts, val_counts), counted,
            )  # fmt: skip
        return self._split_sizes

    def report_splits(self) -> None:
        """Under a Trainer only (a data module built for a dry run or predict says nothing)."""
        from normia.data.facts import share_with_model

        trainer = getattr(self, "trainer", None)
        if trainer is None or self.train_set is None:
            return
        sizes = self.split_sizes()
        share_with_model(self, unigram_loss=sizes.unigram_loss)
        if not self._splits_reported and trainer.is_global_zero:
            print(sizes.describe(), flush=True)
            self._splits_reported = True
