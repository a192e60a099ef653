"""Fine-tuning modes of a Transformers model: full, frozen encoder + head, LoRA (peft); parameter counts.

LoRA is peft's (a well-kept library beats our own code): `get_peft_model` with a `LoraConfig`; for a classifier,
peft's task type also trains and saves the new head (`modules_to_save`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from normia.errors import UserError, did_you_mean

MODES = ("full", "frozen", "lora")
PEFT_TASK_TYPES = {
    "sequence_classification": "SEQ_CLS",
    "token_classification": "TOKEN_CLS",
    "causal_lm": "CAUSAL_LM",
}
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def check_mode(finetune: str) -> str:
    """Raises UserError for a mode outside full | frozen | lora."""
    if finetune not in MODES:
        raise UserError(
            f"model.finetune='{finetune}' is not a fine-tuning mode{did_you_mean(finetune, MODES)}"
        )
    return finetune


def lora_settings(lora: Mapping[str, Any] | None) -> dict[str, Any]:
    """model.lora as {r, alpha, dropout, target_modules}, checked (UserError for an unknown key or a bad value).

    target_modules: a list of module-name suffixes (`[query, value]`, `[q_proj, v_proj]`), a regular expression
    matched against full module names, or "all-linear" (peft's: every linear layer but the output head).
    """
    given = dict(lora or {})
    unknown = [k for k in given if k not in LORA_KEYS]
    if unknown:
        raise UserError(f"unknown key 'model.lora.{unknown[0]}'{did_you_mean(unknown[0], LORA_KEYS)}")
    settings = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": None, **given}
    if not isinstance(settings["r"], int) or settings["r"] < 1:
        raise UserError(f"model.lora.r={settings['r']} must be an integer >= 1 (the rank of the adapters)")
    if not isinstance(settings["alpha"], (int, float)) or settings["alpha"] <= 0:
        raise UserError(f"model.lora.alpha={settings['alpha']} must be a number > 0")
    if not 0 <= float(settings["dropout"]) < 1:
        raise UserError(f"model.lora.dropout={settings['dropout']} must be in [0, 1)")
    targets = settings["target_modules"]
    if targets is None or (not isinstance(targets, str) and not list(targets)):
        raise UserError(
            "model.lora.target_modules is not set: name the layers to adapt, e.g. model.lora.target_modules="
            "[query,value] (BERT-like) or [q_proj,v_proj] (LLaMA-like), or all-linear"
        )
    if not isinstance(targets, str):
        settings["target_modules"] = [str(t) for t in targets]
    return settings


def lora_config(settings: Mapping[str, Any], task: str) -> Any:
    """peft.LoraConfig from lora_settings' dict."""
    from peft import LoraConfig

    return LoraConfig(
        r=int(settings["r"]),
        lora_alpha=settings["alpha"],
        lora_dropout=float(settings["dropout"]),
        target_modules=settings["target_modules"],
        task_type=PEFT_TASK_TYPES[task],
    )


def lora_matches(net: nn.Module, settings: Mapping[str, Any], task: str) -> list[str]:
    """Names of the modules of `net` that LoRA would adapt (peft's own matching rule)."""
    from peft.tuners.tuners_utils import check_target_module_exists

    targets = settings["target_modules"]
    if targets == "all-linear":
        head = _output_head_names(net)
        return [
            n for n, m in net.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] not in head
        ]
    config = lora_config(settings, task)
    return [name for name, _ in net.named_modules() if name and check_target_module_exists(config, name)]


def _output_head_names(net: nn.Module) -> set[str]:
    out = getattr(net, "get_output_embeddings", lambda: None)()
    return {n.split(".")[-1] for n, m in net.named_modules() if out is not None and m is out}


def refuse_unmatched(net: nn.Module, settings: Mapping[str, Any], task: str, key: str = "model.lora") -> None:
    """UserError when target_modules match no module of `net`, naming a few linear layers that exist."""
    if lora_matches(net, settings, task):
        return
    linear = sorted({n.split(".")[-1] for n, m in net.named_modules() if isinstance(m, nn.Linear)})
    shown = ", ".join(linear[:12])
    raise UserError(
        f"{key}.target_modules={_shown(settings['target_modules'])} matches no module of this model; its linear "
        f"layers are named: {shown}; e.g. {key}.target_modules=[{','.join(linear[:2])}]"
    )


def _shown(targets: str | Sequence[str]) -> str:
    return targets if isinstance(targets, str) else "[" + ",".join(targets) + "]"


def apply_finetune(net: nn.Module, finetune: str, lora: Mapping[str, Any] | None, task: str) -> nn.Module:
    """Set which parameters train; returns the model to train (a peft model for lora, else `net` itself).

    frozen: every parameter of the pretrained body (`net.base_model`) is frozen; the task head trains.
    Raises UserError for a model whose body cannot be told from its head, or LoRA modules that match nothing.
    """
    check_mode(finetune)
    if finetune == "full":
        return net
    if finetune == "frozen":
        body = getattr(net, "base_model", net)
        if body is net:
            raise UserError(
                "model.finetune=frozen: this model has no separate body and head to freeze; use full or lora"
            )
        for param in body.parameters():
            param.requires_grad_(False)
        if not any(p.requires_grad for p in net.parameters()):
            raise UserError("model.finetune=frozen leaves nothing to train in this model; use full or lora")
        return net
    settings = lora_settings(lora)
    refuse_unmatched(net, settings, task)
    from peft import get_peft_model

    return get_peft_model(net, lora_config(settings, task))


def parameter_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a tied or shared tensor counts once. Sharded (FSDP2 DTensor) parameters
    count with their global size."""
    trainable = total = 0
    for param in module.parameters():  # parameters() yields a shared tensor once
        n = param.numel()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
