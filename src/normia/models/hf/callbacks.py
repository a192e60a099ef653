"""Lightning callbacks a pretrained model adds to the Trainer (through `configure_callbacks`, see TaskModule).

- ParameterCounts: trainable / total parameters printed at the start, logged to MLflow as metrics
  `model/trainable_params` and `model/total_params` (the run summary shows them too).
- SaveHuggingFace: at the end of training, the model (or only the LoRA adapter) and its tokenizer written in
  Hugging Face format to `<output_dir>/hf_model/`, loadable with `from_pretrained` elsewhere, and logged to MLflow as
  the artifact folder `hf_model`. Under FSDP2 the full weights are gathered first (every rank takes part).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor

from normia.models.hf.finetune import parameter_counts

HF_FOLDER = "hf_model"


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


class SaveHuggingFace(L.Callback):
    """Write `<output_dir>/hf_model/` with the model's `save_hf_model` and the tokenizer of its folder."""

    def __init__(self) -> None:
        self.folder: Path | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        model = pl_module.model  # type: ignore[attr-defined]
        state = _gathered_state(pl_module)  # collective under FSDP2: every rank calls it
        if trainer.is_global_zero:
            self.folder = save_hf_folder(model, Path(trainer.default_root_dir), state, _classes(trainer))
            print(f"hugging face model: {self.folder}", flush=True)
            _log_folder(trainer.logger, self.folder)
        trainer.strategy.barrier("normia-save-hf")


def save_hf_folder(
    model: Any, output_dir: Path, state: dict[str, Tensor] | None = None, classes: Any = None
) -> Path:
    """Write model + tokenizer to output_dir/hf_model (built in a temporary folder, then renamed into place)."""
    final = output_dir / HF_FOLDER
    partial = output_dir / f".{HF_FOLDER}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_hf_model(str(partial), state_dict=state, classes=classes)
    _save_tokenizer(getattr(model, "path", None), partial)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def _save_tokenizer(path: str | None, folder: Path) -> None:
    """The tokenizer of the pretrained folder, saved beside the weights (skipped when that folder has none)."""
    if not path:
        return
    from normia.errors import UserError
    from normia.models.hf.loading import load_tokenizer

    try:
        tokenizer = load_tokenizer(path, "model.path")
    except UserError:
        return
    tokenizer.save_pretrained(str(folder))


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
