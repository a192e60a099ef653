"""In-process pieces: the text-CSV data module on French open-data CSVs, the tokenised corpus, the causal LM wrapper
with LoRA, fine-tuning modes and their parameter counts, and offline mode."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from normia.data.hf_tokens import TokenizedTextDataModule
from normia.data.text_csv import TextCSVDataModule
from normia.errors import UserError
from normia.models.hf.classifiers import HFCausalLM, HFSequenceClassifier


def test_the_bundled_opinions_read_as_french_open_data(bert_dir: Path) -> None:
    data = TextCSVDataModule(str(bert_dir), corpus="avis_fr", text="avis", label="sentiment", batch_size=4)
    assert data.classes == ["neutre", "négatif", "positif"] and data.num_labels == 3
    assert len(data.train_set) == 40 and len(data.val_set) == 10
    ids, mask, labels = data.train_set.__getitems__([0, 1, 2])
    assert ids.shape == mask.shape and ids.dtype == labels.dtype == torch.int64 and labels.shape == (3,)
    assert mask.sum(1).max() == ids.shape[1]  # padded to the longest row only
    assert (ids[mask == 0] == 0).all()  # [PAD] is id 0 in the tiny tokenizer


def test_a_comma_separated_csv_with_a_bom_and_numeric_labels(tmp_path: Path, bert_dir: Path) -> None:
    rows = "\n".join(f"texte numéro {i},{i % 2}" for i in range(12))
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + f"phrase,classe\n{rows}\n".encode())
    data = TextCSVDataModule(str(bert_dir), path=str(tmp_path / "t.csv"), text="phrase", label="classe")
    assert data.classes == ["0", "1"]


def test_bad_tables_are_one_line(tmp_path: Path, bert_dir: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("avis;sentiment\nbien;positif\n;négatif\nmal;négatif\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"empty cell in column 'avis'.*data row 2"):
        TextCSVDataModule(str(bert_dir), path=str(csv), text="avis", label="sentiment")
    with pytest.raises(UserError, match=r"column 'texte' \(data.text\) is not in"):
        TextCSVDataModule(str(bert_dir), path=str(csv), text="texte", label="sentiment")
    csv.write_text("mots;tags\nRouen est loin;B O\nCaen;B\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"data row 1 .* 3 words .* 2 tags"):
        TextCSVDataModule(str(bert_dir), path=str(csv), text="mots", label="tags", task="tokens")
    with pytest.raises(UserError, match="no such folder"):
        TextCSVDataModule(str(tmp_path / "nope"), corpus="avis_fr", text="avis", label="sentiment")


def test_a_word_tag_goes_to_its_first_sub_word(tmp_path: Path, bert_dir: Path) -> None:
    (tmp_path / "t.csv").write_text("mots;tags\n" + "Rouen médiathèque;LIEU O\n" * 6, encoding="utf-8")
    data = TextCSVDataModule(
        str(bert_dir), path=str(tmp_path / "t.csv"), text="mots", label="tags", task="tokens"
    )
    _, mask, labels = data.train_set.__getitems__([0])
    scored = labels[0][labels[0] != -100].tolist()
    assert (
        scored == [0, 1] and labels[0, 0] == -100 and labels[0, int(mask[0].sum()) - 1] == -100
    )  # [CLS] [SEP]


def test_tokenised_corpus_windows(llama_dir: Path) -> None:
    data = TokenizedTextDataModule(str(llama_dir), corpus="coriolanus", seq_len=32, batch_size=4)
    inputs, targets = data.train_set.__getitems__([0, 1])
    assert inputs.shape == (2, 32) and torch.equal(inputs[:, 1:], targets[:, :-1])
    assert data.vocab_size > 500 and int(inputs.max()) < data.vocab_size


def test_causal_lm_with_lora_trains_only_the_adapters(llama_dir: Path) -> None:
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    model = HFCausalLM(str(llama_dir), finetune="lora", lora=lora, save_hf=False)
    trainable, total = model.parameter_counts()
    per_layer = (4 * 64 + 64 * 4) + (4 * 64 + 32 * 4)  # A (r, in) + B (out, r): q 64->64, v 64->32 (GQA)
    assert trainable == 2 * per_layer and total > 50 * trainable
    tokens = torch.randint(0, 500, (2, 17), generator=torch.Generator().manual_seed(0))
    loss, metrics = model.loss((tokens[:, :-1], tokens[:, 1:]))
    assert abs(loss.item() - math.log(model.net.config.vocab_size)) < 0.5
    assert metrics["bits_per_token"].item() == pytest.approx(loss.item() / math.log(2))
    loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())


def test_fine_tuning_modes_and_checkpointing(bert_dir: Path) -> None:
    full = HFSequenceClassifier(str(bert_dir), num_labels=3, save_hf=False)
    frozen = HFSequenceClassifier(str(bert_dir), num_labels=3, finetune="frozen", save_hf=False)
    assert full.parameter_counts()[0] == full.parameter_counts()[1] == frozen.parameter_counts()[1]
    assert frozen.parameter_counts()[0] == 32 * 3 + 3 and full.net.training
    checkpointed = HFSequenceClassifier(
        str(bert_dir), num_labels=3, gradient_checkpointing=True, save_hf=False
    )
    assert (
        getattr(checkpointed.net, "is_activation_checkpointing", None)
        or checkpointed.net.is_gradient_checkpointing
    )
    with pytest.raises(UserError, match=r"model.finetune='lorra' is not a fine-tuning mode .*'lora'"):
        HFSequenceClassifier(str(bert_dir), num_labels=3, finetune="lorra")
    with pytest.raises(UserError, match="target_modules is not set"):
        HFSequenceClassifier(str(bert_dir), num_labels=3, finetune="lora", lora={"r": 4})


def test_loading_forces_offline_mode(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    HFSequenceClassifier(str(bert_dir), num_labels=3, save_hf=False)
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
