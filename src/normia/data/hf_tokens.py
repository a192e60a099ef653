"""Language-model data tokenised with a pretrained model's tokenizer (a local folder, offline).

The text (a file, a folder of .txt files, or a corpus bundled with normia: coriolanus unless data.path is given) is
tokenised once, without special tokens, into one token stream; windows of `seq_len` next-token pairs follow as in
normia.data.text (the last `val_fraction` of the stream is the validation split). Batches: (inputs (B, seq_len)
int64, targets (B, seq_len)).
"""

from __future__ import annotations

import numpy as np

from normia.data.datamodule import ResumableDataModule
from normia.data.splits import check_fraction
from normia.data.text import read_text_bytes, resolve_corpus, text_files
from normia.data.token_shards import ArrayTokens, TokenWindows
from normia.data.unigram import ReportsLanguageSplits
from normia.errors import UserError

DEFAULT_CORPUS = "coriolanus"  # the text trained on when neither data.path nor data.corpus is given


def check_text_source(path: str | None, corpus: str | None) -> None:
    """Refuse data.path together with data.corpus (UserError): which one was meant cannot be guessed. Neither is fine
    (DEFAULT_CORPUS); the config leaves corpus null so that a given data.path wins over the bundled default. Called
    by validation too, before the model is loaded."""
    if path and corpus:
        raise UserError(
            f"data.path={path} and data.corpus={corpus} are both set: drop data.corpus (or set data.corpus=null) "
            "to train on your text, or drop data.path to train on the bundled one"
        )


class TokenizedTextDataModule(ReportsLanguageSplits, ResumableDataModule):
    """Windows of `seq_len` tokens of `path` or `corpus` (DEFAULT_CORPUS when neither is given), tokenised with the
    tokenizer saved in `tokenizer`.

    Raises UserError for a missing text or tokenizer, or a text too short for one training and one validation
    window.
    """

    def __init__(
        self,
        tokenizer: str,
        path: str | None = None,
        corpus: str | None = None,
        seq_len: int = 128,
        batch_size: int = 16,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        check_text_source(path, corpus)
        if not path and not corpus:
            corpus = DEFAULT_CORPUS
        if seq_len < 1:
            raise UserError(f"data.seq_len={seq_len} must be >= 1")
        self.tokenizer_path, self.path, self.corpus = tokenizer, path, corpus
        self.seq_len = int(seq_len)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.vocab_size = 0
        self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._build()
        self.report_splits()  # the unigram baseline and the split sizes, under a Trainer

    def _build(self) -> None:
        from normia.models.hf.loading import load_tokenizer

        tokenizer = load_tokenizer(self.tokenizer_path)
        files = [resolve_corpus(self.corpus)] if self.corpus else text_files(self.path or "")
        text = "\n".join(read_text_bytes(f).tobytes().decode("utf-8") for f in files)
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        self.vocab_size = len(tokenizer)
        tokens = ArrayTokens(np.asarray(ids, dtype=np.int64), self.vocab_size)
        n = len(tokens)
        split = n - int(n * self.val_fraction)
        train = TokenWindows(tokens, self.seq_len, 0, split)
        val = TokenWindows(tokens, self.seq_len, split, n)
        if len(train) < 1 or len(val) < 1:
            raise UserError(
                f"the text has {n} tokens: too short for data.seq_len={self.seq_len} with "
                f"data.val_fraction={self.val_fraction}; use a longer text or a smaller seq_len"
            )
        self.train_set, self.val_set = train, val
