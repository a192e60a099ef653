"""Language-model data: byte-level tokens from UTF-8 text files, or token shards for corpora larger than memory.

Byte level needs no tokenizer (vocabulary 256, nothing downloaded) and works on any language. The last
`val_fraction` of the token stream is the validation split: a contiguous tail, so no validation window overlaps a
training one. Training order is deterministic, sharded across ranks, and resumable mid-epoch (ResumableDataModule).

For `normia predict` the module records how text becomes token ids (`predict_state`, saved in every checkpoint and
logged as normia/predict_state.json): byte level, UTF-8, and the training window. Token shards record nothing: their
tokenizer is not known here, so a run trained on shards cannot turn a prompt into ids.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from normia.data.datamodule import ResumableDataModule
from normia.data.facts import RecordsPredictState, with_predict_state
from normia.data.splits import check_fraction
from normia.data.token_shards import ArrayTokens, TokenShards, TokenWindows
from normia.data.unigram import ReportsLanguageSplits
from normia.errors import UserError, did_you_mean

BYTE_VOCAB_SIZE = 256
CORPORA_PACKAGE = "normia.data.corpora"


def bundled_corpora() -> dict[str, Path]:
    """Public-domain texts shipped inside the package (name -> file), usable as data.corpus=<name>."""
    folder = resources.files(CORPORA_PACKAGE)
    return {p.name.removesuffix(".txt"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".txt")}


def resolve_corpus(name: str) -> Path:
    corpora = bundled_corpora()
    if name not in corpora:
        raise UserError(f"unknown data.corpus '{name}'{did_you_mean(name, corpora)}")
    return corpora[name]


def text_files(path: str | Path) -> list[Path]:
    """A file, or every *.txt file of a directory in sorted order (so the corpus is the same on every machine)."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.txt") if f.is_file())
        if not files:
            raise UserError(
                f"no .txt files in the directory {p}: put text files there or point data.path at a file"
            )
        return files
    if not p.is_file():
        raise UserError(f"text file not found: {p} (fix data.path)")
    return [p]


def read_text_bytes(path: str | Path) -> np.ndarray:
    """The UTF-8 bytes of a file as uint8; an empty or non-UTF-8 file is refused with the offending byte offset."""
    p = Path(path)
    raw = p.read_bytes()
    if not raw.strip():
        raise UserError(f"the text file {p} is empty: give a file with text in it")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"the text file {p} is not UTF-8 (invalid byte 0x{raw[err.start]:02x} at offset {err.start}): "
            "re-encode it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    return np.frombuffer(raw, dtype=np.uint8)


def byte_predict_state(seq_len: int) -> dict[str, Any]:
    """The prediction state of a byte-level language model trained on windows of `seq_len` bytes: prompts are
    encoded as their UTF-8 bytes (ids 0..255) and continuations decoded from them."""
    return {
        "kind": "language_model",
        "input": "text",
        "tokenizer": "bytes",
        "encoding": "utf-8",
        "vocab_size": BYTE_VOCAB_SIZE,
        "seq_len": int(seq_len),
    }


class TextDataModule(ReportsLanguageSplits, RecordsPredictState, ResumableDataModule):
    """Windows of `seq_len` next-token pairs from `path` (text file or folder), `corpus` (bundled) or `shards`."""

    def __init__(
        self,
        path: str | None = None,
        corpus: str | None = None,
        shards: str | None = None,
        seq_len: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        default_corpus: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        given = [name for name, value in (("path", path), ("corpus", corpus), ("shards", shards)) if value]
        if len(given) > 1:
            raise UserError(
                f"set one of data.path, data.corpus, data.shards (got {', '.join(given)}): a given data.path or "
                "data.shards wins over the config's default_corpus, but not over a corpus you set"
            )
        if not given and not default_corpus:
            raise UserError("set data.path (a text file or folder), data.shards or data.corpus")
        if not given:
            corpus = default_corpus
        if seq_len < 1:
            raise UserError(f"data.seq_len={seq_len} must be >= 1")
        self.path, self.corpus, self.shards = path, corpus, shards
        self.seq_len = int(seq_len)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.tokens: TokenShards | ArrayTokens | None = None
        self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    @property
    def vocab_size(self) -> int:
        return self.load_tokens().vocab_size

    def load_tokens(self) -> TokenShards | ArrayTokens:
        if self.tokens is None:
            if self.shards:
                self.tokens = TokenShards(self.shards)
            else:
                files = [resolve_corpus(self.corpus)] if self.corpus else text_files(self.path or "")
                data = np.concatenate([read_text_bytes(f) for f in files])
                self.tokens = ArrayTokens(data, BYTE_VOCAB_SIZE)
        return self.tokens

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._build()
        self.report_splits()

    def _build(self) -> None:
        tokens = self.load_tokens()
        n = len(tokens)
        split = n - int(n * self.val_fraction)
        train = TokenWindows(tokens, self.seq_len, 0, split)
        val = TokenWindows(tokens, self.seq_len, split, n)
        need = 2 * (self.seq_len + 1)
        if len(train) < 1 or len(val) < 1:
            raise UserError(
                f"the text has {n} tokens: too short for data.seq_len={self.seq_len} with "
                f"data.val_fraction={self.val_fraction} (needs > {int(need / self.val_fraction)}); "
                "use a longer text or a smaller seq_len"
            )
        self.train_set, self.val_set = train, val

    def predict_state(self) -> dict[str, Any] | None:
        """What normia predict needs (see byte_predict_state) for text read as bytes; None for token shards."""
        return None if self.shards else byte_predict_state(self.seq_len)

    def state_dict(self) -> dict[str, Any]:
        """The loader position (resume) and the prediction state, both saved in every checkpoint by Lightning."""
        return with_predict_state(super().state_dict(), self.predict_state())
