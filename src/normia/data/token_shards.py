"""Token corpora too large for memory: flat binary shards read through np.memmap, and fixed-length windows over them.

Layout of a shard directory: `index.json` ({"dtype": "uint16", "vocab_size": V, "shards": [{"file", "tokens"}]}) and
one raw little-endian file per shard. Nothing is loaded until a window is read, so a corpus of any size costs only the
pages that are touched; a window may cross a shard boundary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from normia.errors import UserError

INDEX_FILE = "index.json"
_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32}


def dtype_for_vocab(vocab_size: int) -> str:
    """The smallest unsigned dtype that holds every token id."""
    if vocab_size <= 2**8:
        return "uint8"
    if vocab_size <= 2**16:
        return "uint16"
    return "uint32"


def write_token_shards(
    chunks: Iterable[np.ndarray], out_dir: str | Path, vocab_size: int, shard_tokens: int = 1 << 26
) -> Path:
    """Write token chunks (any sizes) into shards of at most `shard_tokens` tokens; returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for_vocab(vocab_size)
    shards: list[dict[str, int | str]] = []
    buffer: list[np.ndarray] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        if not buffered:
            return
        name = f"shard_{len(shards):05d}.bin"
        np.concatenate(buffer).astype(_DTYPES[dtype]).tofile(out / name)
        shards.append({"file": name, "tokens": buffered})
        buffer, buffered = [], 0

    for chunk in chunks:
        chunk = np.asarray(chunk).ravel()
        if chunk.size and (chunk.min() < 0 or chunk.max() >= vocab_size):
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got [{chunk.min()}, {chunk.max()}]")
        while chunk.size:
            take = min(shard_tokens - buffered, chunk.size)
            buffer.append(chunk[:take])
            buffered += take
            chunk = chunk[take:]
            if buffered == shard_tokens:
                flush()
    flush()
    (out / INDEX_FILE).write_text(
        json.dumps({"dtype": dtype, "vocab_size": vocab_size, "shards": shards}, indent=1)
    )
    return out


class TokenShards:
    """A read-only view of a shard directory as one long token sequence."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index_path = self.directory / INDEX_FILE
        if not index_path.is_file():
            raise UserError(
                f"no token shards at {self.directory} ({INDEX_FILE} missing): "
                "write them with normia.data.token_shards.write_token_shards or fix data.shards"
            )
        index = json.loads(index_path.read_text())
        self.vocab_size = int(index["vocab_size"])
        dtype = _DTYPES[index["dtype"]]
        self._maps = [
            np.memmap(self.directory / s["file"], dtype=dtype, mode="r", shape=(int(s["tokens"]),))
            for s in index["shards"]
            if int(s["tokens"]) > 0
        ]
        self._starts = np.cumsum([0] + [len(m) for m in self._maps])
        if self._starts[-1] == 0:
            raise UserError(f"the token shards at {self.directory} hold no tokens: write a non-empty corpus")

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) as int64, crossing shard boundaries when needed."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"token range [{start}, {stop}) outside [0, {len(self)})")
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        parts = []
        position = start
        shard = first
        while position < stop:
            offset = position - int(self._starts[shard])
            take = min(stop - position, len(self._maps[shard]) - offset)
            parts.append(np.asarray(self._maps[shard][offset : offset + take]))
            position += take
            shard += 1
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


class ArrayTokens:
    """An in-memory token array with the same `read`/`len` interface as TokenShards."""

    def __init__(self, tokens: np.ndarray, vocab_size: int) -> None:
        self.tokens = tokens
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return len(self.tokens)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.tokens[start:stop].astype(np.int64)


class TokenWindows(Dataset):
    """Non-overlapping windows of seq_len + 1 tokens in [begin, end): item i is (inputs, next-token targets)."""

    def __init__(
        self, tokens: TokenShards | ArrayTokens, seq_len: int, begin: int = 0, end: int | None = None
    ) -> None:
        self.tokens = tokens
        self.seq_len = int(seq_len)
        self.begin = int(begin)
        self.end = len(tokens) if end is None else int(end)
        self.count = max(0, (self.end - self.begin - 1) // self.seq_len)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        start = self.begin + index * self.seq_len
        window = torch.from_numpy(self.tokens.read(start, start + self.seq_len + 1))
        return window[:-1], window[1:]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once (the DataLoader then skips per-sample collation: see datamodule.py)."""
        if any(not 0 <= i < self.count for i in indices):
            raise IndexError(indices)
        starts = self.begin + np.asarray(indices, dtype=np.int64) * self.seq_len
        if isinstance(self.tokens, ArrayTokens):  # one fancy-indexing gather
            rows = self.tokens.tokens[starts[:, None] + np.arange(self.seq_len + 1)].astype(np.int64)
        else:
            rows = np.stack([self.tokens.read(int(s), int(s) + self.seq_len + 1) for s in starts])
        windows = torch.from_numpy(rows)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
