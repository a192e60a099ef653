"""Reading a local Hugging Face folder, offline: checks that need no transformers import, then `from_pretrained`.

Every refusal is a `UserError` (one line: the problem and the fix). Transformers does the loading itself (a
well-kept library beats our own code); normia only makes sure it cannot reach the network nor run checkpoint code.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

from normia.errors import UserError
from normia.text_limits import short_error, shown

CONFIG_FILE = "config.json"
ADAPTER_CONFIG = "adapter_config.json"  # a PEFT adapter: refused (refuse_adapter)
# Files whose presence means "weights are here": plain or sharded safetensors, or PyTorch pickles (Transformers reads
# those with torch.load(weights_only=True)).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
DOWNLOAD_HINT = "download it once on a login node (hf download <repo> --local-dir DIR) and set model.path=DIR"

# Which Transformers auto-class each normia model option needs, and the name of its model_type mapping.
TASKS: dict[str, tuple[str, str]] = {
    "sequence_classification": (
        "AutoModelForSequenceClassification",
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    ),
    "token_classification": (
        "AutoModelForTokenClassification",
        "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    ),
    "causal_lm": ("AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
}


def force_offline() -> None:
    """Forbid every Hugging Face download in this process and the processes it starts.

    Sets HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE and HF_DATASETS_OFFLINE to 1, and, if huggingface_hub was already
    imported (it reads the variable once), its module constant too.
    """
    for name in OFFLINE_VARIABLES:
        os.environ[name] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def quiet_transformers() -> None:
    """Errors only from Transformers' logger, and no progress bars (they flood a Slurm log)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def model_folder(path: str | os.PathLike[str] | None, key: str = "model.path") -> Path:
    """The checkpoint folder, checked: it exists, is a folder and holds config.json.

    Raises UserError for a missing or empty path, a file, a hub id (`camembert-base` that is not a folder), or a
    folder without config.json.
    """
    if path is None or not str(path).strip() or str(path) == "???":
        raise UserError(f"{key} is not set: give the local folder of the pretrained model ({DOWNLOAD_HINT})")
    folder = Path(str(path)).expanduser()
    if not folder.exists():
        looks_like_hub_id = "/" not in str(path) or (
            str(path).count("/") == 1 and not str(path).startswith(".")
        )
        hint = DOWNLOAD_HINT if looks_like_hub_id else "fix the path"
        raise UserError(
            f"{key}={path}: no such folder (normia reads local folders only, never the network); {hint}"
        )
    if not folder.is_dir():
        raise UserError(f"{key}={path} is a file, not a folder: give the folder that holds config.json")
    if not (folder / CONFIG_FILE).is_file():
        raise UserError(
            f"{key}={path} has no {CONFIG_FILE}: it is not a Hugging Face model folder (save one with "
            "save_pretrained, or download it with hf download <repo> --local-dir DIR)"
        )
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    """config.json as a dict; a file that is not JSON is refused (UserError)."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {folder / CONFIG_FILE}: {err}; re-download the model") from None
    if not isinstance(config, dict):
        raise UserError(f"{folder / CONFIG_FILE} is not a JSON object: re-download the model")
    return config


def weight_files(folder: Path, key: str = "model.path") -> list[Path]:
    """The weight files of a folder (safetensors first); refuses a folder without any (UserError)."""
    found = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not found:
        present = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise UserError(
            f"{key}={folder} holds no weights (no model.safetensors or sharded index; found: {present}): the "
            "download is incomplete; download the weights too, or save the model with save_pretrained"
        )
    return found


def check_architecture(folder: Path, task: str, key: str = "model.path") -> str:
    """The config's model_type, checked against what the task's Transformers auto-class can build.

    Raises UserError for a config without model_type, a model_type this Transformers does not know (code shipped
    with the checkpoint is never run: no trust_remote_code), or one that has no head for `task` (a GPT-2 folder for
    token classification). Imports transformers' mapping tables only (no model code).
    """
    config = read_config(folder)
    model_type = config.get("model_type")
    if not model_type:
        raise UserError(f"{folder / CONFIG_FILE} has no model_type: re-download or re-save the model")
    from transformers.models.auto import configuration_auto, modeling_auto

    if model_type not in configuration_auto.CONFIG_MAPPING_NAMES:
        remote = (
            " and needs code shipped with the checkpoint (trust_remote_code, never run by normia)"
            if ("auto_map" in config)
            else ""
        )
        raise UserError(
            f"{key}={folder}: model_type '{model_type}' is unknown to transformers "
            f"{_transformers_version()}{remote}; use a model of an architecture transformers ships"
        )
    auto_class, mapping_name = TASKS[task]
    mapping: dict[str, str] = getattr(modeling_auto, mapping_name)
    if model_type not in mapping:
        option = {
            "sequence_classification": "hf_sequence_classifier",
            "token_classification": "hf_token_classifier",
            "causal_lm": "hf_causal_lm",
        }[task]
        others = [
            name for name, (_, m) in TASKS.items() if name != task and model_type in getattr(modeling_auto, m)
        ]
        hint = f"; it fits {', '.join(others)}" if others else ""
        raise UserError(
            f"{key}={folder}: a '{model_type}' model has no {task.replace('_', ' ')} head in transformers "
            f"({auto_class}), so it does not fit model={option}{hint}"
        )
    return str(model_type)


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def refuse_adapter(folder: Path, key: str = "model.path") -> None:
    """Raise UserError when folder holds a PEFT adapter (adapter_config.json): Transformers would load the base
    model it names and apply the adapter silently, so that finetune=full trains only the adapter's few weights.
    normia has no option that loads a trained adapter: the message names the adapter and the ways out."""
    if not (folder / ADAPTER_CONFIG).exists():
        return
    try:
        base = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError, AttributeError):
        base = None
    named = f" for the base model {shown(base)}" if base else ""
    raise UserError(
        f"{key}={folder} holds a PEFT adapter ({ADAPTER_CONFIG}{named}), which would be applied silently and "
        "trained alone: give the base model's folder (model.finetune=lora trains a new adapter), or merge the "
        "adapter into it (peft merge_and_unload, then save_pretrained) and give that folder"
    )


def check_folder(path: str | None, task: str, key: str = "model.path") -> Path:
    """All checks of a folder for `task`: exists, config.json, no adapter, weights, architecture. Returns the folder.
    Raises UserError for the first that fails."""
    folder = model_folder(path, key)
    refuse_adapter(folder, key)
    weight_files(folder, key)
    check_architecture(folder, task, key)
    return folder


def load_pretrained(task: str, path: str, **kwargs: Any) -> Any:
    """`AutoModelFor<task>.from_pretrained(path)`, offline, local files only, no remote code.

    kwargs go to from_pretrained (e.g. num_labels). Raises UserError for every folder problem check_folder finds,
    and for a weight file that does not fit the config (a truncated download).
    """
    folder = check_folder(path, task)
    force_offline()
    import transformers

    quiet_transformers()
    auto = getattr(transformers, TASKS[task][0])
    kwargs.pop("trust_remote_code", None)  # never: a config must not run code shipped with a checkpoint
    try:
        with warnings.catch_warnings():  # torch's two-line note on a pickle's protocol, before our one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            net = auto.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False, **kwargs)
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met an object that is not a tensor
        raise UserError(
            f"the PyTorch pickle in {folder} holds objects other than tensors (loading it could run code), so it "
            "is refused: use safetensors weights (model.safetensors) from a source you trust"
        ) from None
    except Exception as err:  # a checkpoint file is input: whatever it makes the reader raise is one line
        raise UserError(
            f"cannot load the model in {folder} ({type(err).__name__}: {short_error(err)}): re-download it, or "
            "re-save it with save_pretrained (safetensors)"
        ) from None
    if task == "sequence_classification":
        set_missing_pad_id(net, folder)
    return net


def load_tokenizer(path: str | None, key: str = "data.tokenizer") -> Any:
    """The tokenizer saved in a model folder (AutoTokenizer, offline, local files only, a fast tokenizer).

    Raises UserError for a missing folder or one without tokenizer files.
    """
    folder = model_folder(path, key)
    force_offline()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as err:
        text = short_error(err)
        raise UserError(
            f"{key}={path}: no usable tokenizer in that folder ({text}); save the tokenizer beside the model "
            "(tokenizer.save_pretrained(DIR))"
        ) from None
    if isinstance(tokenizer, bool) or not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"{key}={path}: the tokenizer is not a fast (Rust) tokenizer; save a tokenizer.json in that folder"
        )
    return tokenizer


def padding_id(tokenizer: Any) -> int | None:
    """The id batches are padded with: the tokenizer's pad token, else its eos token (what Transformers recommends
    for decoders saved without a pad token); None when it has neither, so rows of different lengths cannot be
    batched."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return None if tokenizer.eos_token_id is None else int(tokenizer.eos_token_id)


def checked_padding_id(tokenizer: Any, path: str, batch_size: int, key: str = "data.tokenizer") -> int:
    """padding_id, or UserError when the tokenizer has neither a pad nor an eos token and batches hold more than one
    row (padding with an arbitrary id such as 0 would feed a real token as padding). 0 for batches of one: never
    padded."""
    pad = padding_id(tokenizer)
    if pad is not None:
        return pad
    if batch_size > 1:
        raise UserError(
            f"{key}={path}: the tokenizer has no pad token and no eos token to pad batches of "
            f"data.batch_size={batch_size} with: give it a pad token (tokenizer.pad_token = ...; "
            "tokenizer.save_pretrained(DIR)) or set data.batch_size=1"
        )
    return 0


def set_missing_pad_id(net: Any, folder: Path) -> None:
    """Give a model whose config has no pad_token_id the id its batches are padded with (padding_id of the folder's
    tokenizer, as TextCSVDataModule pads), and say so in one line on stderr (stdout may carry predictions).

    Why: Transformers' sequence classifiers pool the last token that is not padding and raise on batches of more
    than one row when config.pad_token_id is None. Set on the config after loading, not through from_pretrained: a
    pad id given at construction would become the embedding's padding_idx and freeze the eos token's embedding.
    Nothing changes when the folder has no tokenizer with a pad or eos token (validation refuses batches > 1 then).
    """
    config = getattr(net, "config", None)
    if config is None or getattr(config, "pad_token_id", None) is not None:
        return
    try:
        tokenizer = load_tokenizer(str(folder), "model.path")
    except UserError:
        return
    pad = padding_id(tokenizer)
    if pad is None:
        return
    config.pad_token_id = pad
    if tokenizer.pad_token_id is None:
        eos = shown(tokenizer.eos_token)
        source = f"the tokenizer has no pad token, so batches are padded with its eos token {eos}"
    else:
        source = f"the config has no pad_token_id, so the tokenizer's pad token {shown(tokenizer.pad_token)} is used"
    say(
        f"note: model.path={folder}: {source} and the model's pad_token_id is set to {pad}, as Transformers recommends"
    )


def say(line: str) -> None:
    """One line on stderr, from the first process only: every rank builds its own model and data."""
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    if rank == "0":
        print(line, file=sys.stderr, flush=True)
