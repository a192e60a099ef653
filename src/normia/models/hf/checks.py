"""Validation-time checks of the pretrained-model options, called at the end of normia.config.validate.validate:
a missing folder, a folder without weights, an architecture that does not fit the chosen model option, LoRA modules
that match nothing, or a label count that differs from the data's are refused in one line (exit 2) before any
output folder, MLflow run or Slurm job exists, and before local ranks start (a rank's refusal would print twice).

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
TOKENIZED_DATA = ("normia.data.text_csv.TextCSVDataModule", "normia.data.hf_tokens.TokenizedTextDataModule")


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
    name = target.rsplit(".", 1)[-1]
    if name in MODEL_TASKS:
        _check_transformers_model(model, MODEL_TASKS[name], data)
    elif name == LLAMA:
        _check_llama(model, data)
    if data_target in TOKENIZED_DATA:
        model_folder(data.get("tokenizer"), "data.tokenizer")


def _check_transformers_model(model: DictConfig, task: str, data: Any) -> None:
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
        from normia.data.text_csv import bundled_tables, label_count

        path = data.get("path") or (str(bundled_tables().get(str(data.get("corpus")), "")) or None)
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


def _check_llama(model: DictConfig, data: Any) -> None:
    from normia.models.hf.llama import llama_args
    from normia.models.hf.loading import model_folder, read_config, refuse_adapter, weight_files

    folder = model_folder(model.get("path"))
    refuse_adapter(folder)
    weight_files(folder)
    args = llama_args(read_config(folder), str(folder / "config.json"))
    seq_len = data.get("seq_len") if isinstance(data, DictConfig) else None
    longest = model.get("max_seq_len") or args["max_seq_len"]
    if isinstance(seq_len, int) and seq_len > longest:
        raise UserError(
            f"data.seq_len={seq_len} is longer than the model's {longest} positions: set a shorter data.seq_len"
        )


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
