"""Lightning callbacks a pretrained model adds to the Trainer (through `configure_callbacks`, see TaskModule).

- ParameterCounts: trainable / total parameters printed at the start, logged to MLflow as metrics
  `model/trainable_params` and `model/total_params` (the run summary shows them too).
- SaveHuggingFace: at the end of training, the model (or only the LoRA adapter) and its tokenizer written in
  Hugging Face format to `<output_dir>/hf_model/`, loadable with `from_pretrained` elsewhere, and logged to MLflow as
  the artifact folder `hf_model`. The weights are those of the BEST checkpoint (the monitored metric's best, the
  checkpoint `normia predict` and `normia export` use), not the last step's: a folder that gave other probabilities
  than the served model would be a trap. Without a best checkpoint (nothing monitored), the last weights are saved,
  under FSDP2 gathered first (every rank takes part). The folder's README.md is normia's model card (base model and
  its digest, task, fine-tuning settings, which weights, data, MLflow run, how to load it), and config.json carries
  the pad token id the batches were padded with.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor

from normia.models.hf.finetune import parameter_counts

HF_FOLDER = "hf_model"
CARD = "README.md"
TASK_WORDS = {
    "sequence_classification": "sequence classification (one label per text)",
    "token_classification": "token classification (one label per word)",
    "causal_lm": "causal language modelling (continued pre-training)",
}


class ParameterCounts(L.Callback):
    """Trainable and total parameter counts of the model, printed and logged once the run starts."""

    def __init__(self) -> None:
        self.trainable = 0
        self.total = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trainable, self.total = parameter_counts(pl_module)
        if trainer.is_global_zero:
            share = 100.0 * self.trainable / max(self.total, 1)
            print(
                f"model: {self.trainable:,} trainable of {self.total:,} parameters ({share:.2f}%)", flush=True
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After normia's tracker created the MLflow run (NormiaState.on_train_start runs first)."""
        if trainer.logger is not None:
            trainer.logger.log_metrics(
                {"model/trainable_params": float(self.trainable), "model/total_params": float(self.total)},
                step=0,
            )


@dataclass
class Weights:
    """Which weights a Hugging Face folder holds: the best checkpoint's (`checkpoint` set) or the last step's."""

    step: int | None = None
    checkpoint: Path | None = None
    monitor: str | None = None
    score: float | None = None

    def describe(self) -> str:
        """'weights of the best checkpoint, step 30, val/loss = 0.8123' or 'weights of the last step, step 60'."""
        if self.checkpoint is None:
            step = f", step {self.step}" if self.step is not None else ""
            return f"weights of the last step{step} (no best checkpoint was kept)"
        score = f", {self.monitor} = {self.score:.4f}" if self.monitor and self.score is not None else ""
        return f"weights of the best checkpoint, step {self.step}{score}"


@dataclass
class RunFacts:
    """What the model card says about the run: which weights, its MLflow run, the data it recorded."""

    weights: Weights = field(default_factory=Weights)
    run_id: str | None = None
    tracking_uri: str | None = None
    data: list[str] = field(default_factory=list)


class SaveHuggingFace(L.Callback):
    """Write `<output_dir>/hf_model/` with the model's `save_hf_model` and the tokenizer of its folder."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.weights: Weights | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        model = pl_module.model  # type: ignore[attr-defined]
        best = _best_checkpoint(trainer)
        if best is not None:
            _wait_for_checkpoint_writes(trainer)
        state = None if best is not None else _gathered_state(pl_module)  # collective: every rank calls it
        if trainer.is_global_zero:
            weights = Weights(step=trainer.global_step)
            if best is not None:
                state, weights = best_weights(*best)
            facts = RunFacts(weights, *_mlflow_run(trainer.logger))
            facts.data = _recorded_data(trainer.logger, Path(trainer.default_root_dir))
            self.weights = weights
            self.folder = save_hf_folder(
                model, Path(trainer.default_root_dir), state, _classes(trainer), facts
            )
            print(f"hugging face model: {self.folder} ({weights.describe()})", flush=True)
            _log_folder(trainer.logger, self.folder)
        trainer.strategy.barrier("normia-save-hf")


def _best_checkpoint(trainer: L.Trainer) -> tuple[Path, str, float | None] | None:
    """(path, monitor, score) of the monitored ModelCheckpoint's best file, the same on every rank (Lightning
    broadcasts it); None when no metric is monitored or no checkpoint was kept."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
            score = callback.best_model_score
            value = float(score) if score is not None else None
            return Path(callback.best_model_path), str(callback.monitor), value
    return None


def _wait_for_checkpoint_writes(trainer: L.Trainer) -> None:
    """Checkpoints may still be written in the background (training/checkpoint_writer.py), a sharded one by
    every rank: all of them end before rank 0 reads the best one."""
    from normia.training.checkpoint_writer import WRITER

    WRITER.wait()
    trainer.strategy.barrier("normia-save-hf-read")


def best_weights(
    path: Path, monitor: str | None = None, score: float | None = None
) -> tuple[dict[str, Tensor], Weights]:
    """The model's weights in a normia checkpoint (one file or a sharded folder, read as predict reads it), keyed
    as the model's own state_dict, and where they come from."""
    from normia.training.checkpoint import load_checkpoint_file

    content = load_checkpoint_file(path)
    state = {k.removeprefix("model."): v for k, v in content["state_dict"].items() if k.startswith("model.")}
    step = content.get("global_step")
    if step is None:
        match = re.search(r"(\d+)", path.name)
        step = int(match.group(1)) if match else None
    return state, Weights(step=step, checkpoint=path, monitor=monitor, score=score)


def save_hf_folder(
    model: Any,
    output_dir: Path,
    state: dict[str, Tensor] | None = None,
    classes: Any = None,
    facts: RunFacts | None = None,
) -> Path:
    """Write model + tokenizer + model card to output_dir/hf_model (built in a temporary folder, then renamed into
    place). state: the weights to save, keyed as the model's state_dict (default: its current weights)."""
    final = output_dir / HF_FOLDER
    partial = output_dir / f".{HF_FOLDER}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer = _tokenizer(getattr(model, "path", None))
    pad_id = padding_id(tokenizer) if tokenizer is not None else None
    model.save_hf_model(str(partial), state_dict=state, classes=classes, pad_token_id=pad_id)
    if tokenizer is not None:
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # as the batches were padded: the same ids reloaded
        tokenizer.save_pretrained(str(partial))
    (partial / CARD).write_text(
        model_card(model, final.resolve(), facts or RunFacts(), pad_id), encoding="utf-8"
    )
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def padding_id(tokenizer: Any) -> int | None:
    """The id normia's data modules pad batches with: the tokenizer's pad token, else its eos token (what
    Transformers recommends for decoders saved without a pad token); None when it has neither."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return None if tokenizer.eos_token_id is None else int(tokenizer.eos_token_id)


def _tokenizer(path: str | None) -> Any:
    """The tokenizer of the pretrained folder, or None when that folder has none."""
    if not path:
        return None
    from normia.errors import UserError
    from normia.models.hf.loading import load_tokenizer

    try:
        return load_tokenizer(path, "model.path")
    except UserError:
        return None


def model_card(model: Any, folder: Path, facts: RunFacts, pad_id: int | None) -> str:
    """normia's README.md for a saved folder: only what the run knows (no invented numbers), then how to load it."""
    card = model.hf_card() if hasattr(model, "hf_card") else {}
    base = str(card.get("base") or getattr(model, "path", "") or "")
    lora = card.get("lora")
    library = "peft" if lora else "transformers"
    rows = [
        ("base model", _base_line(base)),
        ("task", _task_line(card)),
        ("fine-tuning", _finetune_line(card)),
        ("weights", facts.weights.describe() + _weights_note(facts.weights)),
        (
            "pad token id",
            str(pad_id) if pad_id is not None else "none (the tokenizer has no pad or eos token)",
        ),
        ("training data", "; ".join(facts.data) or "not recorded"),
        (
            "MLflow run",
            f"{facts.run_id} in {facts.tracking_uri}" if facts.run_id else "none (no MLflow logger)",
        ),
    ]
    if card.get("note"):
        rows.append(("note", str(card["note"])))
    import normia

    lines = [
        "---",
        f"library_name: {library}",
        *([f"base_model: {base}"] if base else []),
        "tags:",
        "- normia",
        *(["- lora"] if lora else []),
        "---",
        "",
        f"# {Path(base).name or 'model'} fine-tuned with normia {normia.__version__}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {_cell(value)} |" for name, value in rows),
        "",
        "## Load it",
        "",
        "```python",
        *_load_snippet(card, base, folder),
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _base_line(base: str) -> str:
    """The base folder and its content digest (the one the run's inputs record: cached, not read again)."""
    if not base:
        return "unknown"
    record = _base_record(base)
    if record is None or not record.sha256:
        return f"{base} (digest not available)"
    files = f", {record.files} files" if record.files is not None else ""
    return f"{base} ({record.label()}{files}, {record.size} bytes)"


def _base_record(base: str) -> Any:
    """The base folder's input record (tracking/data_inputs.py), or None when it cannot be read."""
    from normia.tracking.data_inputs import default_roots, path_record
    from normia.tracking.digest_manifest import manifest

    try:
        record = path_record("model.path", base, Path.cwd(), default_roots())
        manifest().save()
    except Exception:  # the card must not fail a finished run
        return None
    return record if record.kind in ("folder", "file") else None


def _task_line(card: dict[str, Any]) -> str:
    task = str(card.get("task") or "")
    line = f"{TASK_WORDS.get(task, task or 'unknown')}, {card.get('auto_class') or 'AutoModel'}"
    labels = card.get("labels")
    if labels:
        line += "; labels " + ", ".join(f"{i} {name}" for i, name in sorted(labels.items()))
    return line


def _finetune_line(card: dict[str, Any]) -> str:
    lora = card.get("lora")
    if lora:
        targets = lora["target_modules"]
        shown = targets if isinstance(targets, str) else "[" + ", ".join(targets) + "]"
        return (
            f"LoRA (peft): r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, target modules "
            f"{shown}; this folder holds the adapter (and a new task head), not the base weights"
        )
    mode = str(card.get("finetune") or "full")
    if mode == "frozen":
        return "frozen body, task head trained; this folder holds the whole model"
    return "full (every weight trained); this folder holds the whole model"


def _weights_note(weights: Weights) -> str:
    if weights.checkpoint is None:
        return ""
    return f" ({weights.checkpoint.name}: the checkpoint normia predict and normia export use)"


def _load_snippet(card: dict[str, Any], base: str, folder: Path) -> list[str]:
    """A few lines of transformers / peft that load this folder as it was trained."""
    auto = str(card.get("auto_class") or "AutoModel")
    labels = card.get("labels")
    options = f", num_labels={len(labels)}, id2label={dict(sorted(labels.items()))!r}" if labels else ""
    lines = [f"from transformers import {auto}, AutoTokenizer"]
    if card.get("lora"):
        lines += [
            "from peft import PeftModel",
            "",
            f"base = {auto}.from_pretrained({base!r}{options})",
            f"model = PeftModel.from_pretrained(base, {str(folder)!r})",
        ]
    else:
        lines += ["", f"model = {auto}.from_pretrained({str(folder)!r})"]
    lines.append(f"tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})")
    return lines


def _mlflow_run(logger: Any) -> tuple[str | None, str | None]:
    """(run id, tracking URI without credentials) of normia's MlflowTracker, or (None, None)."""
    run_id = getattr(logger, "version", None) if logger is not None else None
    uri = getattr(logger, "tracking_uri", None)
    if not isinstance(run_id, str) or not run_id or not uri:
        return None, None
    from normia.config.masking import mask_uri

    return run_id, mask_uri(str(uri))


def _recorded_data(logger: Any, output_dir: Path) -> list[str]:
    """One line per data input the run recorded in MLflow (digest, size, rows); without a run, the data
    locations of the run's config.yaml, said to be undigested. The model folder is the base line's, not data."""
    from normia.tracking.data_inputs import recorded_inputs

    client = getattr(logger, "experiment", None) if logger is not None else None
    run_id = getattr(logger, "version", None) if logger is not None else None
    if client is not None and run_id and hasattr(client, "get_run"):
        try:
            tags = client.get_run(run_id).data.tags
        except Exception:  # the store went away: the card says what the config says
            tags = {}
        records = recorded_inputs(tags)
        lines = [r.describe() for key, r in sorted(records.items()) if _is_data_key(key)]
        if lines:
            return lines
    return _configured_data(output_dir)


def _is_data_key(key: str) -> bool:
    from normia.tracking.data_inputs import MODEL_FOLDER_KEYS

    return key.startswith("data") and key not in {f"data.{k}" for k in MODEL_FOLDER_KEYS}


def _configured_data(output_dir: Path) -> list[str]:
    """The data locations of output_dir/config.yaml (no digest: no MLflow run recorded one)."""
    from omegaconf import OmegaConf

    from normia.tracking.data_inputs import is_location_key

    config = output_dir / "config.yaml"
    try:
        data = OmegaConf.to_container(OmegaConf.load(config).get("data") or {}, resolve=False)
    except Exception:  # no config.yaml (a unit test, another caller): nothing recorded
        return []
    if not isinstance(data, dict):
        return []
    shown = [f"data.{k}: {v}" for k, v in data.items() if (is_location_key(str(k)) or k == "corpus") and v]
    return [f"{line} (no digest: the run had no MLflow run)" for line in shown]


def _classes(trainer: L.Trainer) -> Any:
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "classes", None) or None


def _gathered_state(pl_module: L.LightningModule) -> dict[str, Tensor] | None:
    """Under FSDP2 (DTensor parameters): the full state dict of the wrapped model on CPU (on every rank; only rank 0
    uses it), keyed as the model's own state_dict; None otherwise (the model saves its own weights)."""
    from torch.distributed.tensor import DTensor

    model = pl_module.model  # type: ignore[attr-defined]
    if not any(isinstance(p, DTensor) for p in model.parameters()):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _log_folder(logger: Any, folder: Path) -> None:
    """The folder as the MLflow artifact directory hf_model/ of this run (normia's MlflowTracker exposes the client
    as `experiment` and the run id as `version`)."""
    client = getattr(logger, "experiment", None) if logger is not None else None
    run_id = getattr(logger, "version", None)
    if client is None or not run_id or not hasattr(client, "log_artifacts"):
        return
    client.log_artifacts(run_id, str(folder), HF_FOLDER)
