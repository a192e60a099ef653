"""Validation-time checks of the pretrained-model options, called at the end of normia.config.validate.validate:
a missing folder, a folder without weights, an architecture that does not fit the chosen model option, LoRA modules
that match nothing, a label count that differs from the data's, data.path together with data.corpus, texts longer
than the model's positions, a tokenizer larger than the model's embeddings, or batches that cannot be padded are
refused in one line (exit 2) before any output folder, MLflow run or Slurm job exists, and before local ranks start
(a rank's refusal would print twice). Transformers would only fail on these mid-training, with a traceback (an index
out of range), or not at all (a rotary model trained past its context).

Cheap for every other config: nothing is imported unless the model or data option is one of these.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from normia.errors import UserError

PREFIX = "normia.models.hf."
MODEL_TASKS = {
    "HFSequenceClassifier": "sequence_classification",
    "HFTokenClassifier": "token_classification",
    "HFCausalLM": "causal_lm",
}
LLAMA = "PretrainedLlama"
TEXT_TABLE = "normia.data.text_csv.TextCSVDataModule"
TOKEN_STREAM = "normia.data.hf_tokens.TokenizedTextDataModule"
TOKENIZED_DATA = (TEXT_TABLE, TOKEN_STREAM)
LENGTH_KEYS = {TEXT_TABLE: "max_length", TOKEN_STREAM: "seq_len"}  # the longest row each data option feeds
# config.json keys that hold the number of positions, by architecture family (GPT-2: n_positions, ...).
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx", "seq_length")
# Architectures whose position ids start after the pad id (RoBERTa's create_position_ids_from_input_ids): CamemBERT's
# 514 positions hold 512 tokens.
OFFSET_POSITIONS = frozenset(
    {
        "camembert", "data2vec-text", "esm", "ibert", "lilt", "longformer", "luke", "markuplm", "mpnet", "roberta",
        "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "xmod",
    }
)  # fmt: skip


def check_hf_config(cfg: DictConfig) -> None:
    """Raise UserError for a pretrained model or tokenised-text option that cannot run (see the module doc)."""
    model = cfg.get("model")
    data = cfg.get("data")
    target = str(model.get("_target_", "")) if isinstance(model, DictConfig) else ""
    data_target = str(data.get("_target_", "")) if isinstance(data, DictConfig) else ""
    if not target.startswith(PREFIX) and data_target not in TOKENIZED_DATA:
        return
    from normia.models.hf.loading import force_offline, model_folder

    force_offline()
    if data_target in TOKENIZED_DATA:
        check_text_source(data, data_target)  # before any model file is read
    name = target.rsplit(".", 1)[-1]
    folder, longest = None, None
    if name in MODEL_TASKS:
        folder = _check_transformers_model(model, MODEL_TASKS[name], data)
    elif name == LLAMA:
        folder, longest = _check_llama(model)
    if data_target not in TOKENIZED_DATA:
        return
    if folder is None:  # normia's own model on tokenised text: the tokenizer folder alone
        model_folder(data.get("tokenizer"), "data.tokenizer")
        return
    check_data_fits(folder, data, data_target, MODEL_TASKS.get(name, "causal_lm"), longest)


def check_text_source(data: DictConfig, data_target: str) -> None:
    """data.path against data.corpus, as the data module would check them after the model is loaded: a path with an
    explicitly set corpus is refused (LM text: a path alone wins over the bundled default)."""
    path, corpus = data.get("path"), data.get("corpus")
    if data_target == TOKEN_STREAM:
        from normia.data.hf_tokens import check_text_source as check_stream

        check_stream(path, corpus)
    else:
        from normia.data.text_csv import check_table_source

        check_table_source(path, corpus, data.get("default_corpus"))


def check_data_fits(
    folder: Any, data: DictConfig, data_target: str, task: str, longest: tuple[int, str] | None = None
) -> None:
    """The tokenised data against the model that reads it: row length, vocabulary, padding (see the module doc).
    longest: (positions, where they come from) when the model option overrides the config's (hf_llama)."""
    from normia.models.hf.loading import load_tokenizer, read_config

    config = read_config(folder)
    key = LENGTH_KEYS[data_target]
    check_positions(key, data.get(key), longest or model_positions(config, folder))
    tokenizer = load_tokenizer(data.get("tokenizer"))  # refuses a folder without a tokenizer
    tokenizer_path = str(data.get("tokenizer"))
    check_vocabulary(tokenizer, tokenizer_path, config.get("vocab_size"), folder)
    if data_target == TEXT_TABLE:
        _check_padding(tokenizer, tokenizer_path, int(data.get("batch_size") or 1), folder, config, task)


def model_positions(config: dict[str, Any], folder: Any) -> tuple[int, str] | None:
    """(the most tokens the model reads in one row, the config key that says so), or None when the config does not
    say (relative positions: nothing to check)."""
    for key in POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if config.get("model_type") in OFFSET_POSITIONS:
                pad = config.get("pad_token_id")
                value -= (1 if pad is None else int(pad)) + 1
            return value, f"{key} in {folder}/config.json"
    return None


def check_positions(key: str, length: Any, positions: tuple[int, str] | None) -> None:
    """Refuse rows longer than the model's positions (UserError): learned positions fail with an index error
    mid-training, rotary ones (LLaMA) train silently on positions they were never trained for."""
    if positions is None or not isinstance(length, int) or length <= positions[0]:
        return
    count, source = positions
    raise UserError(
        f"data.{key}={length} is longer than the model's {count} positions ({source}): set data.{key}={count} or "
        "less"
    )


def tokenizer_size(tokenizer: Any) -> int:
    """How many token ids the tokenizer can produce: len(tokenizer), or one more than its largest id if its ids
    have holes."""
    largest = max(tokenizer.get_vocab().values(), default=-1)
    return max(len(tokenizer), int(largest) + 1)


def check_vocabulary(tokenizer: Any, tokenizer_path: str, vocab_size: Any, folder: Any) -> None:
    """Refuse a tokenizer whose ids go past the model's embedding rows (UserError): the lookup fails mid-training
    with an index error (a CUDA device-side assert on a GPU).

    Refused rather than resized: a larger tokenizer is almost always another model's, whose ids mean other tokens,
    and resizing would add untrained rows (frozen under LoRA and finetune=frozen) and a model whose shape differs
    from its checkpoint's; a deliberate resize is one call the user makes once, on the saved model."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return
    size = tokenizer_size(tokenizer)
    if size <= vocab_size:
        return
    raise UserError(
        f"the tokenizer in data.tokenizer={tokenizer_path} has {size} tokens but the model in {folder} embeds "
        f"{vocab_size} (vocab_size): use the tokenizer saved with this model (data.tokenizer=<model.path>), or "
        "resize its embeddings (model.resize_token_embeddings(len(tokenizer)); save_pretrained) and give that folder"
    )


def _check_padding(
    tokenizer: Any, tokenizer_path: str, batch_size: int, folder: Any, config: dict[str, Any], task: str
) -> None:
    """Batches of a text table can be padded (a pad token, else eos: loading.checked_padding_id), and a sequence
    classifier without a pad_token_id will be given the id the data pads with: load_pretrained takes it from the
    model folder's own tokenizer (loading.set_missing_pad_id), which must then agree with data.tokenizer's."""
    from pathlib import Path

    from normia.models.hf.loading import checked_padding_id, load_tokenizer, padding_id

    pad = checked_padding_id(tokenizer, tokenizer_path, batch_size)
    if task != "sequence_classification" or batch_size == 1 or config.get("pad_token_id") is not None:
        return
    if Path(tokenizer_path).expanduser().resolve() == Path(folder).resolve():
        return
    try:
        own = padding_id(load_tokenizer(str(folder), "model.path"))
    except UserError:
        own = None
    if own != pad:
        raise UserError(
            f"the model in {folder} has no pad_token_id and its folder gives none that matches the id {pad} that "
            f"data.tokenizer={tokenizer_path} pads with: set data.tokenizer to the model's folder, or add "
            f'"pad_token_id": {pad} to {folder}/config.json'
        )


def _check_transformers_model(model: DictConfig, task: str, data: Any) -> Any:
    """Folder, fine-tuning mode, LoRA modules and labels of a Transformers model option; returns the folder."""
    from normia.models.hf.finetune import check_mode, lora_settings, refuse_unmatched
    from normia.models.hf.loading import check_folder

    folder = check_folder(model.get("path"), task)
    finetune = check_mode(str(model.get("finetune", "full")))
    num_labels = model.get("num_labels")
    if finetune == "lora":
        settings = lora_settings(_plain(model.get("lora")))
        refuse_unmatched(_skeleton(folder, task, num_labels), settings, task)
    if task != "causal_lm":
        _check_labels(folder, num_labels, data, task)
    return folder


def _skeleton(folder: Any, task: str, num_labels: int | None) -> Any:
    """The model's modules with no weights (meta device): what LoRA's target_modules are matched against."""
    import torch
    import transformers

    from normia.models.hf.loading import TASKS

    config = transformers.AutoConfig.from_pretrained(
        str(folder), local_files_only=True, trust_remote_code=False
    )
    if num_labels:
        config.num_labels = int(num_labels)
    auto = getattr(transformers, TASKS[task][0])
    with torch.device("meta"):
        return auto.from_config(config)


def _check_labels(folder: Any, num_labels: int | None, data: Any, task: str) -> None:
    """model.num_labels (or the checkpoint's own) against the labels of a text CSV, without tokenising it."""
    if not isinstance(data, DictConfig) or not str(data.get("_target_", "")).endswith(".TextCSVDataModule"):
        return
    wanted_task = "tokens" if task == "token_classification" else "classification"
    if str(data.get("task", "classification")) != wanted_task:
        raise UserError(
            f"data.task={data.get('task')} does not fit this model: set data.task={wanted_task} for "
            f"{task.replace('_', ' ')}"
        )
    if data.get("classes"):
        count: int | None = len(data.classes)
        source = f"data.classes lists {count}"
    else:
        from normia.data.corpus_choice import chosen_corpus
        from normia.data.text_csv import bundled_tables, label_count

        path = data.get("path") or (str(bundled_tables().get(str(chosen_corpus(data)), "")) or None)
        count = (
            label_count(str(path), str(data.get("label", "label")), wanted_task, data.get("sep"))
            if path
            else None
        )
        source = f"column '{data.get('label', 'label')}' of {path} holds {count}"
    if count is None:
        return  # the data module names the unreadable file itself
    if num_labels is None:
        from normia.models.hf.loading import read_config

        own = read_config(folder).get("num_labels") or len(read_config(folder).get("id2label") or {}) or 2
        if own != count:
            raise UserError(
                f"the checkpoint in {folder} has {own} labels but {source}: set model.num_labels={count} "
                "(a new head is trained)"
            )
    elif int(num_labels) != count:
        raise UserError(f"model.num_labels={num_labels} but {source} labels: set model.num_labels={count}")


def _check_llama(model: DictConfig) -> tuple[Any, tuple[int, str]]:
    """Folder and config of model=hf_llama; returns the folder and (positions, where they come from): model.max_seq_len
    when set (RoPE extended on purpose), else the config's."""
    from normia.models.hf.llama import check_finetune, llama_args
    from normia.models.hf.loading import model_folder, read_config, refuse_adapter, weight_files

    check_finetune(
        model.get("finetune", "full"), model.get("path")
    )  # LoRA: refused before any job is submitted
    folder = model_folder(model.get("path"))
    refuse_adapter(folder)
    weight_files(folder)
    args = llama_args(read_config(folder), str(folder / "config.json"))
    if model.get("max_seq_len"):
        return folder, (int(model.max_seq_len), "model.max_seq_len")
    return folder, (int(args["max_seq_len"]), f"max_position_embeddings in {folder}/config.json")


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
