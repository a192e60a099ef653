"""Tiny Hugging Face folders built from configs (no network): a WordPiece tokenizer trained on normia's bundled
texts, a 2-layer BERT encoder, LLaMA decoders (GQA, tied or untied embeddings) and a ViT (an architecture without a
text head), each saved with save_pretrained as a downloaded checkpoint would be."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch

from normia.data.text import bundled_corpora
from normia.data.text_csv import bundled_tables


def corpus_lines() -> list[str]:
    """Coriolanus and the bundled French opinions, one line each."""
    lines = bundled_corpora()["coriolanus"].read_text(encoding="utf-8").splitlines()
    lines += bundled_tables()["avis_fr"].read_text(encoding="utf-8-sig").splitlines()
    return [line for line in lines if line.strip()]


def train_tokenizer(vocab_size: int = 600, bos_eos: bool = False):
    """A fast WordPiece tokenizer ([CLS] ... [SEP]) trained on the bundled texts, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        corpus_lines(),
        trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False),
    )
    if not bos_eos:
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def bert_folder(folder: Path, seed: int = 0, pretrain_steps: int = 40) -> Path:
    """A 2-layer BERT encoder (hidden 32) and its tokenizer, saved as a pretrained checkpoint.

    A random body gives a frozen head nothing to learn from, so the body is first "pre-trained" for a few full-batch
    steps on the bundled opinions (a classifier whose head is then dropped): what a real pretrained encoder offers.
    """
    from transformers import AutoModelForSequenceClassification, BertConfig

    from normia.data.text_csv import read_text_table

    tokenizer = train_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,  # steady losses on 40 training rows
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    model = AutoModelForSequenceClassification.from_config(config)
    texts, labels = read_text_table(str(bundled_tables()["avis_fr"]), "avis", "sentiment")
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    names = sorted(set(labels))
    targets = torch.tensor([names.index(v) for v in labels])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(pretrain_steps):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.bert.save_pretrained(str(folder))  # the body only: fine-tuning adds a new head
    tokenizer.save_pretrained(str(folder))
    return folder


def llama_config(vocab_size: int, tie: bool, n_kv_heads: int = 2, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tie,
        **extra,
    )


def llama_folder(
    folder: Path, tie: bool = False, n_kv_heads: int = 2, seed: int = 0, shard: str | None = None
) -> Path:
    """A 2-layer LlamaForCausalLM (hidden 64) and a tokenizer trained on the bundled texts.

    shard: e.g. "20KB" writes sharded safetensors with an index, as large checkpoints are."""
    from transformers import LlamaForCausalLM

    tokenizer = train_tokenizer(bos_eos=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(len(tokenizer), tie, n_kv_heads))
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(str(folder), **kwargs)
    tokenizer.save_pretrained(str(folder))
    return folder


def vit_folder(folder: Path) -> Path:
    """A tiny image model: an architecture with no text head."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=16,
        patch_size=8,
    )
    ViTModel(config).save_pretrained(str(folder))
    return folder


def refused_by_compose(overrides: list[str], *words: str) -> str:
    """normia.compose(overrides) must raise a one-line UserError holding every word; returns the message."""
    import pytest

    import normia
    from normia.errors import UserError

    with pytest.raises(UserError) as info:
        normia.compose(overrides)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message
