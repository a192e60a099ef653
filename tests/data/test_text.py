"""Byte-level text, token shards and the bundled public-domain corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from normia.data.text import TextDataModule, bundled_corpora, read_text_bytes
from normia.data.token_shards import TokenShards, TokenWindows, write_token_shards
from normia.errors import UserError


def test_bundled_corpus_is_public_domain_shakespeare() -> None:
    corpora = bundled_corpora()
    assert "coriolanus" in corpora
    text = corpora["coriolanus"].read_text(encoding="utf-8")
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert len(text) == 31_994


def test_byte_windows_are_next_token_pairs(tmp_path: Path) -> None:
    text = "été à Rouen, " * 200  # multi-byte UTF-8
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    dm = TextDataModule(path=str(tmp_path / "a.txt"), seq_len=16, batch_size=4, val_fraction=0.1)
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    x, y = dm.train_set[3]
    assert x.dtype == torch.int64 and x.shape == (16,)
    assert torch.equal(x, torch.from_numpy(raw[48:64].astype(np.int64)))
    assert torch.equal(y, torch.from_numpy(raw[49:65].astype(np.int64)))
    assert dm.vocab_size == 256
    # validation windows come from the held-out tail only
    split = len(raw) - int(len(raw) * 0.1)
    assert dm.val_set.begin == split and dm.train_set.end == split


def test_a_folder_of_text_files_is_read_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("B" * 3000)
    (tmp_path / "a.txt").write_text("A" * 3000)
    dm = TextDataModule(path=str(tmp_path), seq_len=32, batch_size=2)
    assert dm.train_set[0][0][0].item() == ord("A")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        ("caf\u00e9".encode("latin-1") + b" au lait" * 100, "is not UTF-8 (invalid byte 0xe9 at offset 3)"),
    ],
)
def test_empty_or_non_utf8_text_is_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_text_bytes(path)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"path": "/no/such/file.txt"}, "text file not found: /no/such/file.txt"),
        ({"corpus": "coriolan"}, "unknown data.corpus 'coriolan' (did you mean 'coriolanus'?)"),
        (
            {"corpus": "coriolanus", "path": "x.txt"},
            "set one of data.path, data.corpus, data.shards (got path, corpus)",
        ),
        ({"corpus": "coriolanus", "seq_len": 4000}, "too short for data.seq_len=4000"),
        ({"shards": "/no/shards"}, "no token shards at /no/shards"),
    ],
)
def test_bad_text_settings(kwargs: dict, expected: str) -> None:
    with pytest.raises(UserError) as err:
        TextDataModule(**kwargs)
    assert expected in str(err.value)


def test_token_shards_roundtrip_across_boundaries(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50_000, size=10_000)
    chunks = [tokens[:1234], tokens[1234:7000], tokens[7000:]]
    write_token_shards(chunks, tmp_path / "shards", vocab_size=50_000, shard_tokens=3000)
    shards = TokenShards(tmp_path / "shards")
    assert len(shards) == 10_000 and len(list((tmp_path / "shards").glob("*.bin"))) == 4
    assert shards.vocab_size == 50_000
    np.testing.assert_array_equal(shards.read(2990, 3010), tokens[2990:3010])  # crosses a shard boundary
    np.testing.assert_array_equal(shards.read(0, 10_000), tokens)
    windows = TokenWindows(shards, seq_len=100)
    x, y = windows[29]
    np.testing.assert_array_equal(x.numpy(), tokens[2900:3000])
    np.testing.assert_array_equal(y.numpy(), tokens[2901:3001])
    with pytest.raises(ValueError, match="token ids must lie in"):
        write_token_shards([np.array([5, 70_000])], tmp_path / "bad", vocab_size=50_000)


def test_shards_feed_the_same_data_module(tmp_path: Path) -> None:
    text = ("Speak, speak. " * 500).encode()
    write_token_shards(
        [np.frombuffer(text, dtype=np.uint8)], tmp_path / "s", vocab_size=256, shard_tokens=1000
    )
    (tmp_path / "t.txt").write_bytes(text)
    from_shards = TextDataModule(shards=str(tmp_path / "s"), seq_len=64, batch_size=8)
    from_text = TextDataModule(path=str(tmp_path / "t.txt"), seq_len=64, batch_size=8)
    assert len(from_shards.train_set) == len(from_text.train_set)
    for i in (0, 5, len(from_text.train_set) - 1):
        assert all(torch.equal(a, b) for a, b in zip(from_shards.train_set[i], from_text.train_set[i]))


def test_a_given_path_wins_over_the_default_corpus(tmp_path) -> None:
    """Issue 25 D: data.path needed data.corpus=null besides it, else it was refused (or, elsewhere, ignored)."""
    import normia
    from normia.data.corpus_choice import chosen_corpus

    text = tmp_path / "mine.txt"
    text.write_text("Rouen, Caen, Le Havre. " * 400, encoding="utf-8")
    cfg = normia.compose(["experiment=poc_shakespeare_bytes", f"data.path={text}"])
    assert chosen_corpus(cfg.data) is None
    module = TextDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    assert module.path == str(text) and module.corpus is None
    assert len(module.load_tokens()) == len(text.read_bytes())
    default = normia.compose(["experiment=poc_shakespeare_bytes"])
    assert chosen_corpus(default.data) == "coriolanus"
    assert (
        chosen_corpus({"corpus": "avis_fr", "path": "x.csv"}) == "avis_fr"
    )  # an explicit corpus is kept (refused)
