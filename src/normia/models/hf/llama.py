"""Hugging Face `LlamaForCausalLM` folders <-> normia's own `Llama` (normia.ops kernels), both ways.

normia's Llama uses Hugging Face's parameter names inside its blocks and Hugging Face's RoPE layout (rotate-half,
cos/sin halves repeated: normia.ops.modules.RotaryEmbedding), so no permutation of q_proj/k_proj is needed: the
permutation of transformers' convert_llama_weights_to_hf.py turns Meta's interleaved layout into that same
rotate-half layout, which is what a Hugging Face folder holds. The mapping is a renaming, checked by equal logits
(tests/hf/test_llama_mapping.py):

    model.embed_tokens.weight                     <-> embed.weight
    model.layers.{i}.self_attn.{q,k,v,o}_proj      <-> layers.{i}.attn.{q,k,v,o}_proj
    model.layers.{i}.mlp.{gate,up,down}_proj       <-> layers.{i}.mlp.{gate,up,down}_proj
    model.layers.{i}.input_layernorm.weight        <-> layers.{i}.attn_norm.weight
    model.layers.{i}.post_attention_layernorm      <-> layers.{i}.mlp_norm.weight
    model.norm.weight                              <-> norm.weight
    lm_head.weight (absent when tied)              <-> head.weight (the embedding itself when tied)

Weights are read with safetensors (one file or shards listed in model.safetensors.index.json) without building the
Transformers model; config.json decides the sizes. Variants normia's Llama does not implement (RoPE scaling,
attention or MLP biases, another activation, a head size other than hidden/heads) are refused, not approximated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from normia.errors import UserError
from normia.models.llama import Llama

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")
_HF_TO_NORMIA_LAYER = {
    "self_attn.q_proj.weight": "attn.q_proj.weight",
    "self_attn.k_proj.weight": "attn.k_proj.weight",
    "self_attn.v_proj.weight": "attn.v_proj.weight",
    "self_attn.o_proj.weight": "attn.o_proj.weight",
    "mlp.gate_proj.weight": "mlp.gate_proj.weight",
    "mlp.up_proj.weight": "mlp.up_proj.weight",
    "mlp.down_proj.weight": "mlp.down_proj.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "mlp_norm.weight",
}
_NORMIA_TO_HF_LAYER = {v: k for k, v in _HF_TO_NORMIA_LAYER.items()}
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


def llama_args(config: dict[str, Any], source: str = "config.json") -> dict[str, Any]:
    """normia Llama constructor arguments from a Hugging Face LlamaConfig dict.

    Raises UserError for a config that is not LLaMA's or uses a variant normia's Llama does not implement.
    """
    if config.get("model_type") != "llama":
        raise UserError(
            f"{source}: model_type '{config.get('model_type')}' is not 'llama': model=hf_llama loads LlamaForCausalLM "
            "folders only; use model=hf_causal_lm for other decoders"
        )
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    problems = {
        "rope scaling": rope_type not in ("default", None),
        "attention biases": bool(config.get("attention_bias")),
        "MLP biases": bool(config.get("mlp_bias")),
        f"activation {config.get('hidden_act')}": config.get("hidden_act", "silu") != "silu",
        "a head size other than hidden_size / num_attention_heads": config.get("head_dim")
        not in (
            None,
            hidden // heads,
        ),
    }
    unsupported = [name for name, bad in problems.items() if bad]
    if rope_type not in ("default", None):
        unsupported[unsupported.index("rope scaling")] = f"rope scaling '{rope_type}'"
    if unsupported:
        raise UserError(
            f"{source}: this LLaMA uses {unsupported[0]}, which normia's Llama does not implement; "
            "use model=hf_causal_lm (Transformers' own implementation) for it"
        )
    theta = (rope.get("rope_theta") if isinstance(rope, dict) else None) or config.get("rope_theta", 10000.0)
    return {
        "vocab_size": int(config["vocab_size"]),
        "dim": hidden,
        "n_layers": int(config["num_hidden_layers"]),
        "n_heads": heads,
        "n_kv_heads": int(config.get("num_key_value_heads") or heads),
        "ffn_hidden": int(config["intermediate_size"]),
        "max_seq_len": int(config.get("max_position_embeddings", 2048)),
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
        "rope_base": float(theta),
        "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
    }


def hf_config(model: Llama) -> dict[str, Any]:
    """The Hugging Face LlamaConfig fields that describe `model` (LlamaConfig(**hf_config(model)))."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": model.dim,
        "intermediate_size": model.ffn_hidden,
        "num_hidden_layers": model.n_layers,
        "num_attention_heads": model.n_heads,
        "num_key_value_heads": model.n_kv_heads,
        "head_dim": model.dim // model.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": model.max_seq_len,
        "rms_norm_eps": model.norm.eps,
        "rope_theta": model.rope.base,
        "tie_word_embeddings": model.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
    }


def hf_to_normia(state: dict[str, Tensor], tie_embeddings: bool) -> dict[str, Tensor]:
    """A LlamaForCausalLM state dict -> normia Llama's (head.weight is the embedding when tied).

    Raises UserError naming an unexpected or missing tensor.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name == "model.embed_tokens.weight":
            out["embed.weight"] = tensor
        elif name == "model.norm.weight":
            out["norm.weight"] = tensor
        elif name == "lm_head.weight":
            if not tie_embeddings:
                out["head.weight"] = tensor
        elif (match := _LAYER.fullmatch(name)) and match.group(2) in _HF_TO_NORMIA_LAYER:
            out[f"layers.{match.group(1)}.{_HF_TO_NORMIA_LAYER[match.group(2)]}"] = tensor
        elif name.endswith("rotary_emb.inv_freq"):
            continue  # older checkpoints saved the RoPE frequencies; normia recomputes them
        else:
            raise UserError(
                f"unexpected tensor '{name}' in a LLaMA checkpoint: not a LlamaForCausalLM folder?"
            )
    if tie_embeddings and "embed.weight" in out:
        out["head.weight"] = out["embed.weight"]
    if "head.weight" not in out:
        raise UserError(
            "the LLaMA checkpoint has no lm_head.weight but its config says tie_word_embeddings=false"
        )
    return out


def normia_to_hf(state: dict[str, Tensor], tie_embeddings: bool) -> dict[str, Tensor]:
    """normia Llama's state dict -> LlamaForCausalLM's (lm_head.weight left out when tied, as Transformers saves)."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name == "embed.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name == "norm.weight":
            out["model.norm.weight"] = tensor
        elif name == "head.weight":
            if not tie_embeddings:
                out["lm_head.weight"] = tensor
        else:
            _, index, rest = name.split(".", 2)
            out[f"model.layers.{index}.{_NORMIA_TO_HF_LAYER[rest]}"] = tensor
    return out


def read_hf_weights(folder: Path) -> dict[str, Tensor]:
    """Every tensor of a folder's safetensors weights (one file, or the shards its index lists), on the CPU.

    Raises UserError when the folder has no safetensors weights or a shard is missing.
    """
    from safetensors.torch import load_file

    if (folder / SAFETENSORS).is_file():
        return load_file(str(folder / SAFETENSORS))
    index = folder / SAFETENSORS_INDEX
    if not index.is_file():
        raise UserError(
            f"{folder} has no {SAFETENSORS} nor {SAFETENSORS_INDEX}: model=hf_llama reads safetensors weights "
            "(re-save the model with save_pretrained(..., safe_serialization=True))"
        )
    files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state: dict[str, Tensor] = {}
    for name in files:
        if not (folder / name).is_file():
            raise UserError(f"shard {name} listed in {index} is missing: the download is incomplete")
        state.update(load_file(str(folder / name)))
    return state


def llama_from_hf(path: str | Path, **overrides: Any) -> Llama:
    """A normia Llama holding the weights of a Hugging Face LLaMA folder (fp32). overrides: Llama arguments such
    as max_seq_len or activation_checkpointing."""
    return PretrainedLlama(str(path), save_hf=False, **overrides)


def token_ids(folder: str | Path) -> dict[str, int]:
    """bos/eos/pad token ids of a LLaMA folder's config.json (those it sets): hf_config describes the network
    only, and LlamaConfig's defaults (bos 1, eos 2, no pad) are not LLaMA 3's (128000, 128001)."""
    from normia.models.hf.loading import read_config

    config = read_config(Path(folder))
    return {k: config[k] for k in TOKEN_ID_KEYS if isinstance(config.get(k), (int, list))}


def save_llama_as_hf(
    model: Llama,
    folder: str | Path,
    state: dict[str, Tensor] | None = None,
    special_ids: dict[str, Any] | None = None,
) -> Path:
    """Write `model` as a LlamaForCausalLM folder: config.json and model.safetensors (lm_head left out when tied).

    state: a full state dict of `model` (e.g. gathered under FSDP2, or a checkpoint's); default model.state_dict().
    special_ids: bos_token_id / eos_token_id / pad_token_id for config.json (token_ids of the source folder).
    """
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from normia.models.hf.loading import quiet_transformers

    quiet_transformers()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    weights = normia_to_hf(state if state is not None else model.state_dict(), model.tie_embeddings)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    save_file(weights, str(out / SAFETENSORS), metadata={"format": "pt"})
    config = LlamaConfig(**hf_config(model), **(special_ids or {}))
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(str(out))
    return out


class PretrainedLlama(Llama):
    """normia's Llama with the weights of a Hugging Face `LlamaForCausalLM` folder, for training on normia's
    kernels (model=hf_llama). Sizes come from the folder's config.json.

    Args:
        path: the local folder (config.json + safetensors weights, one file or shards).
        max_seq_len: the longest sequence trained on (default: the config's max_position_embeddings); the RoPE
            tables are built for this many positions.
        activation_checkpointing: recompute each block in the backward pass.
        save_hf: write the trained weights back as a LlamaForCausalLM folder (<output_dir>/hf_model/).
        finetune, lora: only `full` trains here; they exist so that `model.finetune=lora` (the key of
            model=hf_causal_lm) is refused with the line that runs LoRA on this folder (check_finetune).
    Raises:
        UserError: a missing folder, no safetensors weights, a non-LLaMA config, an unsupported LLaMA variant, or
            a fine-tuning mode other than full.
    """

    def __init__(
        self,
        path: str,
        max_seq_len: int | None = None,
        activation_checkpointing: bool = False,
        save_hf: bool = True,
        finetune: str = "full",
        lora: Any = None,
    ) -> None:
        from normia.models.hf.loading import model_folder, read_config, weight_files

        check_finetune(finetune, path)
        folder = model_folder(path)
        weight_files(folder)
        args = llama_args(read_config(folder), str(folder / "config.json"))
        if max_seq_len:
            args["max_seq_len"] = int(max_seq_len)
        hf_state = read_hf_weights(folder)
        with torch.device("meta"):  # no random initialisation of weights about to be replaced
            super().__init__(**args, activation_checkpointing=activation_checkpointing)
        state = hf_to_normia(hf_state, self.tie_embeddings)
        expected = set(self.state_dict())
        if set(state) != expected:
            missing = sorted(expected - set(state))
            raise UserError(
                f"the LLaMA checkpoint in {folder} does not match its config.json "
                f"({'missing ' + missing[0] if missing else 'extra ' + sorted(set(state) - expected)[0]}): "
                "re-download it"
            )
        state = {k: v.float() for k, v in state.items()}
        if self.tie_embeddings:
            state["head.weight"] = state["embed.weight"]
        self.load_state_dict(state, assign=True)
        if self.tie_embeddings:
            self.head.weight = self.embed.weight
        self._real_buffers()
        self.path, self.save_hf = str(folder), save_hf

    def _real_buffers(self) -> None:
        """Buffers that the checkpoint does not hold (non-persistent: the unigram baseline of models/baseline.py)
        were made on the meta device with the rest, and load_state_dict leaves them there: make them again on the
        CPU (a meta buffer fails the first .to()/.cpu(), e.g. Lightning's teardown)."""
        if hasattr(self, "init_unigram"):
            self.init_unigram()
        left = [name for name, buf in self.named_buffers() if buf.is_meta]
        if left:
            raise RuntimeError(f"PretrainedLlama: buffer {left[0]} is still on the meta device after loading")

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
        """The trained weights as a LlamaForCausalLM folder, with the source folder's bos/eos/pad ids (pad_token_id,
        the id batches were padded with, wins: LLaMA checkpoints often have none)."""
        ids = token_ids(self.path)
        if pad_token_id is not None:
            ids["pad_token_id"] = int(pad_token_id)
        save_llama_as_hf(self, folder, state_dict, ids)

    def hf_card(self) -> dict[str, Any]:
        """What the model card of a saved folder says about the model (callbacks.model_card)."""
        return {
            "base": self.path,
            "task": "causal_lm",
            "auto_class": "AutoModelForCausalLM",
            "finetune": "full",
            "note": "trained on normia's own Llama (normia.ops kernels), saved as LlamaForCausalLM",
        }


def check_finetune(finetune: Any, path: Any = None) -> None:
    """UserError unless finetune is full: model=hf_llama trains every weight on normia's kernels; LoRA (peft) and
    a frozen body are model=hf_causal_lm's, which loads the same LLaMA folder with Transformers. Called by the
    constructor, and meant for validation (models/hf/checks.py) so that a Slurm job is not submitted first."""
    if str(finetune) == "full":
        return
    where = path if isinstance(path, str) and path and path != "???" else "<the llama folder>"
    raise UserError(
        f"model=hf_llama trains every weight (model.finetune=full only), not model.finetune={finetune}: for LoRA "
        f"or a frozen body use model=hf_causal_lm model.path={where} model.finetune={finetune}"
        + (" model.lora.target_modules=[q_proj,v_proj]" if str(finetune) == "lora" else "")
    )
