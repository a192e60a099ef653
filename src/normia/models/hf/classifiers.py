"""Transformers models as normia models: `loss(batch) -> (loss, metrics)`, from a local folder, offline.

Batches (from normia.data.text_csv and normia.data.hf_tokens):
- sequence classification: (input_ids (B, T) int64, attention_mask (B, T) int64, labels (B,) int64);
- token classification: (input_ids (B, T), attention_mask (B, T), labels (B, T) int64, -100 where not scored);
- causal LM: (inputs (B, T) int64, targets (B, T) int64), the targets being the inputs shifted by one.
Losses are mean cross-entropies in nats, computed in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from normia.models.baseline import UnigramBaseline
from normia.models.hf.finetune import apply_finetune, check_mode, lora_settings, parameter_counts
from normia.models.hf.loading import load_pretrained

IGNORE_INDEX = -100


class HFModel(nn.Module):
    """A Transformers `AutoModelFor<task>` loaded from `path` (a local folder) with a fine-tuning mode.

    Args:
        path: the folder written by save_pretrained / `hf download --local-dir` (config.json + weights).
        finetune: full | frozen (pretrained body frozen, head trained) | lora (peft adapters on target_modules).
        lora: {r, alpha, dropout, target_modules} for finetune=lora.
        gradient_checkpointing: recompute activations in the backward pass (Transformers' own, non-reentrant).
        save_hf: write the trained model (or the LoRA adapter) and the tokenizer to <output_dir>/hf_model/ at the
            end of training and log that folder to MLflow.
    Raises:
        UserError: a missing folder, no weights, an architecture without this task's head, a bad fine-tuning mode
            or LoRA modules that match nothing.
    """

    task = "sequence_classification"

    def __init__(
        self,
        path: str,
        finetune: str = "full",
        lora: Mapping[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        save_hf: bool = True,
        **load_kwargs: Any,
    ) -> None:
        super().__init__()
        check_mode(finetune)
        self.path, self.finetune, self.save_hf = str(path), finetune, save_hf
        net = load_pretrained(self.task, self.path, **load_kwargs)
        if gradient_checkpointing:
            _enable_checkpointing(net)
        if hasattr(net.config, "use_cache"):
            net.config.use_cache = False  # no KV cache while training
        self.lora = lora_settings(lora) if finetune == "lora" else None  # for the model card
        self.net = apply_finetune(net, finetune, lora, self.task)
        self.net.train()  # from_pretrained returns eval mode; Lightning keeps modules' modes as they are

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits: (B, num_labels) for a sequence, (B, T, num_labels) per token, (B, T, vocab) for a LM."""
        return self.net(input_ids=input_ids, attention_mask=attention_mask).logits

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters."""
        return parameter_counts(self)

    def configure_callbacks(self) -> list[Any]:
        """Added to the Trainer by normia's TaskModule: parameter counts, and the Hugging Face export."""
        from normia.models.hf.callbacks import ParameterCounts, SaveHuggingFace

        return [ParameterCounts(), *([SaveHuggingFace()] if self.save_hf else [])]

    def save_hf_model(
        self,
        folder: str,
        state_dict: dict[str, Tensor] | None = None,
        classes: Any = None,
        pad_token_id: int | None = None,
    ) -> None:
        """save_pretrained into `folder`: the whole model, or only the adapter (and trained head) for LoRA; the
        class names become config.id2label. state_dict: the weights to save, keyed as this wrapper's state_dict
        (the best checkpoint's, or a gathered FSDP state dict); default: the current weights. pad_token_id: the id
        the batches were padded with, written into config.json (a checkpoint without one, such as LLaMA's, would
        otherwise reload with none, and its sequence classifier would fail on batches of several rows)."""
        base = self.net.get_base_model() if hasattr(self.net, "get_base_model") else self.net
        if (
            classes
            and hasattr(base.config, "id2label")
            and len(classes) == getattr(base.config, "num_labels", -1)
        ):
            base.config.id2label = {i: str(c) for i, c in enumerate(classes)}
            base.config.label2id = {str(c): i for i, c in enumerate(classes)}
        if pad_token_id is not None:
            _set_pad_id(base, int(pad_token_id))
        kwargs = {}
        if state_dict is not None:  # keyed like this wrapper's state_dict: net.<name>
            kwargs["state_dict"] = {
                k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")
            }
        self.net.save_pretrained(folder, safe_serialization=True, **kwargs)

    def hf_card(self) -> dict[str, Any]:
        """What the model card of a saved folder says about the model (callbacks.model_card)."""
        from normia.models.hf.loading import TASKS

        base = self.net.get_base_model() if hasattr(self.net, "get_base_model") else self.net
        labels = getattr(base.config, "id2label", None) if self.task != "causal_lm" else None
        return {
            "base": self.path,
            "task": self.task,
            "auto_class": TASKS[self.task][0],
            "finetune": self.finetune,
            "lora": self.lora,
            "labels": {int(k): str(v) for k, v in labels.items()} if labels else None,
        }


class _HFLabelled(HFModel):
    """A Transformers model with a classification head of `num_labels` outputs (null: the checkpoint's own)."""

    def __init__(
        self,
        path: str,
        num_labels: int | None = None,
        finetune: str = "full",
        lora: Mapping[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        save_hf: bool = True,
    ) -> None:
        extra = {"num_labels": int(num_labels)} if num_labels else {}
        super().__init__(path, finetune, lora, gradient_checkpointing, save_hf, **extra)
        self.num_labels = int(self.net.config.num_labels)


class HFSequenceClassifier(_HFLabelled):
    """One label per text: `AutoModelForSequenceClassification` with `num_labels` outputs.

    num_labels: the number of classes; null keeps the checkpoint's (a checkpoint already fine-tuned for the task).
    Metrics: acc.
    """

    task = "sequence_classification"

    def loss(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        input_ids, attention_mask, labels = batch
        logits = self(input_ids, attention_mask).float()
        loss = nn.functional.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"acc": acc.detach()}


class HFTokenClassifier(_HFLabelled):
    """One label per word (named entities, part of speech): `AutoModelForTokenClassification`.

    The label of a word goes to its first sub-word token; the others (and padding, special tokens) are -100, not
    scored. Metrics: acc over the scored tokens of the batch.
    """

    task = "token_classification"

    def loss(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        input_ids, attention_mask, labels = batch
        logits = self(input_ids, attention_mask).float()
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        scored = labels != IGNORE_INDEX
        acc = ((logits.argmax(-1) == labels) & scored).sum() / scored.sum().clamp(min=1)
        return loss, {"acc": acc.detach().float()}


class HFCausalLM(HFModel, UnigramBaseline):
    """A decoder language model (`AutoModelForCausalLM`: LLaMA, Mistral, GPT-2, ...) for continued pre-training.

    Metrics: bits_per_token. For a LLaMA checkpoint, model=hf_llama runs the same weights on normia's own kernels.
    """

    task = "causal_lm"

    def __init__(
        self,
        path: str,
        finetune: str = "full",
        lora: Mapping[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        save_hf: bool = True,
    ) -> None:
        super().__init__(path, finetune, lora, gradient_checkpointing, save_hf)
        self.init_unigram()  # validation logs loss_unigram, the training split's zero-context baseline

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        inputs, targets = batch
        logits = self(inputs).float()
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        return loss, self.with_unigram({"bits_per_token": loss.detach() / math.log(2)})

    @torch.no_grad()
    def logits(self, tokens: Tensor) -> Tensor:
        """(B, T) -> (B, T, vocab)."""
        return self(tokens)


def _set_pad_id(net: nn.Module, pad_token_id: int) -> None:
    """The pad id on the config (saved in config.json) and the generation config (generate() pads with it)."""
    net.config.pad_token_id = pad_token_id
    generation = getattr(net, "generation_config", None)
    if generation is not None:
        generation.pad_token_id = pad_token_id


def _enable_checkpointing(net: nn.Module) -> None:
    """Transformers' own activation checkpointing, non-reentrant (works with frozen inputs, LoRA and FSDP2);
    `activation_checkpointing_enable` since transformers 5.x, `gradient_checkpointing_enable` before."""
    kwargs = {"use_reentrant": False}
    enable = getattr(net, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
