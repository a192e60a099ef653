"""Inputs Transformers would refuse mid-training with a traceback (issue 25 B, D): a tokenizer without a pad token
(padded with eos and said, or refused when it has no eos either), rows longer than the model's positions, a
tokenizer larger than the embeddings, and data.path against the bundled default corpus of data=hf_text. Each
refusal is one line from validation (normia.compose), before the model is loaded and before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import llama_config, refused_by_compose, train_tokenizer

from normia.errors import UserError

OPINIONS = ["data=text_csv", "data.corpus=avis_fr", "data.text=avis", "data.label=sentiment"]
CLASSIFY = ["model=hf_sequence_classifier", "model.num_labels=3", *OPINIONS]


def decoder_folder(folder: Path, vocab_size: int | None = None, eos: bool = True) -> Path:
    """A tiny LLaMA (no pad_token_id in its config) whose tokenizer has no pad token; eos: [SEP] as its eos token.
    vocab_size: the embedding rows, if not the tokenizer's size."""
    from transformers import LlamaForCausalLM

    tokenizer = train_tokenizer(vocab_size=200, bos_eos=True)
    tokenizer.pad_token = None
    if eos:
        tokenizer.eos_token = "[SEP]"
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(vocab_size or len(tokenizer), tie=True))
    assert model.config.pad_token_id is None
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def no_pad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decoder_folder(tmp_path_factory.mktemp("no_pad"))


@pytest.fixture(scope="module")
def no_pad_no_eos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decoder_folder(tmp_path_factory.mktemp("no_pad_no_eos"), eos=False)


refused = refused_by_compose


# B1a: a tokenizer without a pad token


def test_without_a_pad_token_batches_pad_with_eos_and_the_classifier_takes_it(
    no_pad_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import normia
    from normia.data.text_csv import TextCSVDataModule
    from normia.models.hf.classifiers import HFSequenceClassifier

    normia.compose([*CLASSIFY, f"model.path={no_pad_dir}", "data.batch_size=4"])  # not refused: eos pads
    data = TextCSVDataModule(str(no_pad_dir), corpus="avis_fr", text="avis", label="sentiment", batch_size=4)
    ids, mask, labels = data.train_set.__getitems__([0, 1, 2, 3])
    eos = 3  # [SEP] in the tiny tokenizer
    assert (mask == 0).any() and (ids[mask == 0] == eos).all()
    capsys.readouterr()
    model = HFSequenceClassifier(str(no_pad_dir), num_labels=3, save_hf=False)
    assert model.net.config.pad_token_id == eos
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "eos token '[SEP]'" in notes[0] and "pad_token_id is set to 3" in notes[0], (
        notes
    )
    loss, _ = model.loss((ids, mask, labels))  # Transformers raised on a batch > 1 without a pad id
    assert torch.isfinite(loss)
    embeddings = model.net.get_input_embeddings()
    assert embeddings.padding_idx is None  # eos keeps a trainable embedding row


def test_without_pad_or_eos_batches_are_refused_before_the_model_loads(no_pad_no_eos_dir: Path) -> None:
    import normia
    from normia.data.text_csv import TextCSVDataModule

    overrides = [*CLASSIFY, f"model.path={no_pad_no_eos_dir}"]
    refused(
        [*overrides, "data.batch_size=4"],
        "no pad token and no eos token",
        "data.batch_size=4",
        "tokenizer.pad_token",
        "data.batch_size=1",
    )
    normia.compose([*overrides, "data.batch_size=1"])  # nothing to pad
    with pytest.raises(UserError, match="no pad token and no eos token"):
        TextCSVDataModule(
            str(no_pad_no_eos_dir), corpus="avis_fr", text="avis", label="sentiment", batch_size=2
        )


def test_a_data_tokenizer_that_pads_otherwise_than_the_model_would(no_pad_dir: Path, tmp_path: Path) -> None:
    """The model takes its missing pad id from its own folder's tokenizer ([SEP], 3); this one pads with [PAD], 0."""
    other = tmp_path / "padded"
    train_tokenizer(vocab_size=200).save_pretrained(str(other))
    shutil.copy(no_pad_dir / "config.json", other / "config.json")
    refused(
        [*CLASSIFY, f"model.path={no_pad_dir}", f"data.tokenizer={other}", "data.batch_size=4"],
        "has no pad_token_id",
        "pads with",
        '"pad_token_id": 0',
    )


# B1b: rows longer than the model's positions, for every Hugging Face model option


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model=hf_causal_lm", "data=hf_text", "data.seq_len=512"], "seq_len"),
        (["model=hf_llama", "data=hf_text", "data.seq_len=512"], "seq_len"),
        ([*CLASSIFY, "data.max_length=512"], "max_length"),
        (["model=hf_token_classifier", *OPINIONS, "data.task=tokens", "data.max_length=512"], "max_length"),
    ],
    ids=["causal_lm", "llama", "sequence", "tokens"],
)
def test_rows_longer_than_the_positions(
    llama_dir: Path, bert_dir: Path, overrides: list[str], key: str
) -> None:
    folder = llama_dir if "data=hf_text" in overrides else bert_dir
    refused(
        [*overrides, f"model.path={folder}"],
        f"data.{key}=512 is longer than the model's 128 positions",
        "max_position_embeddings",
        f"set data.{key}=128 or less",
    )


def test_positions_read_from_each_config_family() -> None:
    from normia.models.hf.checks import model_positions

    assert model_positions({"model_type": "gpt2", "n_positions": 1024}, "m") == (
        1024,
        "n_positions in m/config.json",
    )
    camembert = {"model_type": "camembert", "max_position_embeddings": 514, "pad_token_id": 1}
    assert model_positions(camembert, "m")[0] == 512  # positions start after the pad id
    assert model_positions({"model_type": "t5"}, "m") is None  # relative positions: nothing to check


# B1c: a tokenizer larger than the embeddings


def test_a_tokenizer_larger_than_the_embeddings(tmp_path: Path) -> None:
    folder = decoder_folder(tmp_path / "small_vocab", vocab_size=150)
    refused(
        ["model=hf_causal_lm", "data=hf_text", f"model.path={folder}", "data.seq_len=32"],
        "has 200 tokens",
        "embeds 150 (vocab_size)",
        "resize_token_embeddings",
    )


# D4b: data=hf_text with data.path


def test_a_given_path_wins_over_the_default_corpus(llama_dir: Path, tmp_path: Path) -> None:
    import normia
    from normia.data.hf_tokens import TokenizedTextDataModule
    from normia.training.build import instantiate_node

    text = tmp_path / "texte.txt"
    text.write_text("Le vent se lève, il faut tenter de vivre.\n" * 40, encoding="utf-8")
    cfg = normia.compose(
        [
            "model=hf_causal_lm",
            "data=hf_text",
            f"model.path={llama_dir}",
            f"data.path={text}",
            "data.seq_len=32",
        ]
    )
    data = instantiate_node(cfg.data, "data")
    assert data.path == str(text) and data.corpus is None
    assert TokenizedTextDataModule(str(llama_dir), seq_len=32).corpus == "coriolanus"  # neither: the default


def test_a_path_with_an_explicit_corpus_is_refused_before_the_model_loads(
    llama_dir: Path, tmp_path: Path, workdir: Path, normia_cli
) -> None:
    """The model's weights are cut short: were they read first, loading them would be the refusal."""
    folder = tmp_path / "cut"
    shutil.copytree(llama_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    text = tmp_path / "texte.txt"
    text.write_text("Le vent se lève.\n", encoding="utf-8")
    overrides = ["model=hf_causal_lm", "data=hf_text", f"model.path={folder}", f"data.path={text}"]
    refused([*overrides, "data.corpus=coriolanus"], f"data.path={text}", "data.corpus=coriolanus", "both set")
    result = normia_cli("train", *overrides, "data.corpus=coriolanus", cwd=workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "both set" in lines[0], result.stderr
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()
