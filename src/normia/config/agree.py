"""Keys that must agree, checked before any run: a model and a data module that disagree would otherwise fail after
the MLflow run exists (a window of the wrong length) or, worse, train without a word (10 outputs for 3 classes).

The presets give each pair one source of truth by interpolation (model.input_len: ${data.input_len}); what remains
(a value set on one side only, a value the data decides) is checked here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from normia.errors import UserError

# (model key, data key): equal whenever both exist. The data side is the source of truth.
EQUAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("input_len", "input_len"),
    ("horizon", "horizon"),
)
# (model key, data key): the model's must be at least the data's (a longer context or a larger vocabulary works).
AT_LEAST_PAIRS: tuple[tuple[str, str], ...] = (("max_seq_len", "seq_len"),)


def check_agreement(cfg: DictConfig) -> None:
    """Refuse a model whose shape keys disagree with the data's. Raises UserError naming both keys and the fix."""
    model, data = cfg.get("model"), cfg.get("data")
    if not isinstance(model, DictConfig) or not isinstance(data, DictConfig):
        return
    for model_key, data_key in EQUAL_PAIRS:
        if model_key in model and data_key in data and model[model_key] != data[data_key]:
            raise UserError(
                f"model.{model_key}={model[model_key]} but data.{data_key}={data[data_key]}: they must agree; "
                f"set data.{data_key} alone (the model's preset follows it) or both to the same value"
            )
    for model_key, data_key in AT_LEAST_PAIRS:
        if model_key in model and data_key in data and _below(model[model_key], data[data_key]):
            raise UserError(
                f"model.{model_key}={model[model_key]} is less than data.{data_key}={data[data_key]}: "
                f"set model.{model_key}={data[data_key]} (or more), or a shorter data.{data_key}"
            )
    for key, (value, fact) in data_facts(data).items():
        if key not in model or model[key] is None:
            continue
        if key == "vocab_size" and _below(model[key], value):
            raise UserError(
                f"model.{key}={model[key]} is too small: {fact}; set model.{key}={value} (or more)"
            )
        if key != "vocab_size" and model[key] != value:
            raise UserError(
                f"model.{key}={model[key]} does not match the data: {fact}; set model.{key}={value}"
            )


def _below(model_value: Any, data_value: Any) -> bool:
    return isinstance(model_value, int) and isinstance(data_value, int) and model_value < data_value


def data_facts(data: DictConfig) -> dict[str, tuple[Any, str]]:
    """What the data decides, found without loading it: {model key: (value, the fact in words)}."""
    target = str(data.get("_target_", ""))
    if target.endswith(".ImageFolderDataModule"):
        return _image_folder_facts(data)
    if target.endswith(".TextDataModule"):
        return _text_facts(data)
    if target.endswith(".SyntheticDataModule") and isinstance(data.get("vocab_size"), int):
        vocab = int(data.vocab_size)
        return {"vocab_size": (vocab, f"the synthetic tokens lie in [0, {vocab}) (data.vocab_size)")}
    if target.endswith(".DigitsDataModule"):
        flat = bool(data.get("flatten", True))
        shape = (
            {"in_features": (64, "the flattened 8x8 digits have 64 features")}
            if flat
            else {"in_channels": (1, "the digit images have 1 channel")}
        )
        return {"num_classes": (10, "the digits have 10 classes"), **shape}
    return {}


def _text_facts(data: DictConfig) -> dict[str, tuple[Any, str]]:
    shards = data.get("shards")
    if not shards:
        return {"vocab_size": (256, "byte-level text has 256 token ids")}
    index = Path(str(shards)).expanduser() / "index.json"
    try:
        vocab = int(json.loads(index.read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # the data module names a missing or broken shard index itself
    return {"vocab_size": (vocab, f"the token shards {index.parent} have vocab_size {vocab}")}


def _image_folder_facts(data: DictConfig) -> dict[str, tuple[Any, str]]:
    root = data.get("root")
    base = Path(str(root)).expanduser() if root else None
    if base is None or not base.is_dir():
        return {}  # the data module names a missing folder itself
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        return {}
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    channels = 1 if data.get("grayscale") else 3
    mode = "grayscale (data.grayscale=true)" if channels == 1 else "RGB (data.grayscale=false)"
    return {
        "num_classes": (len(classes), f"the image folder {base} has {len(classes)} classes ({shown})"),
        "in_channels": (channels, f"the images are read as {mode}: {channels} channel(s)"),
    }
