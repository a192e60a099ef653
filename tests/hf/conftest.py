"""Tiny pretrained folders for the Hugging Face tests, built once per session from configs (no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
pytest.importorskip("transformers")
pytest.importorskip("peft")
sys.path.insert(0, str(Path(__file__).parent))  # tiny_models

import tiny_models


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT encoder (hidden 32) with a WordPiece tokenizer trained on the bundled texts."""
    return tiny_models.bert_folder(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer LlamaForCausalLM (hidden 64, GQA 4/2 heads, untied) with its tokenizer."""
    return tiny_models.llama_folder(tmp_path_factory.mktemp("llama"))
