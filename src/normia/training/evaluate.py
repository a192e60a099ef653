"""`normia eval`: rebuild a run's model and data from the config saved beside its checkpoint, then validate."""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from normia.config.trust import load_untrusted_yaml, trusted_prefixes
from normia.config.validate import validate
from normia.errors import UserError
from normia.training.build import instantiate_node
from normia.training.checkpoint import AtomicCheckpointIO, is_checkpoint, load_checkpoint_file
from normia.training.consolidate import consolidate
from normia.training.health import deferred_target_error
from normia.training.module import TaskModule
from normia.training.quiet import quiet_libraries
from normia.training.sharded_read import is_sharded


def evaluate(ckpt: Path, overrides: list[str], trust: bool = False) -> dict[str, float]:
    """Validation metrics of `ckpt` on its run's data. The config beside it is checked as untrusted (config/trust.py:
    allowed targets, no resolvers) before anything is imported; trust=True skips that check and says so.

    Raises UserError for a missing checkpoint or config, or a refused config."""
    quiet_libraries()  # Lightning's tips and checkpoint-path warnings say nothing a user can act on here
    if not is_checkpoint(ckpt):
        raise UserError(f"checkpoint {ckpt} does not exist")
    load_checkpoint_file(ckpt)  # refuses a checkpoint that needs arbitrary unpickling, before anything else
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise UserError(
            f"no config.yaml in {run_dir}: normia eval needs a checkpoint written by normia train"
        )
    own = OmegaConf.from_dotlist(overrides)
    recorded = load_untrusted_yaml(
        config_file.read_text(), f"{config_file}", trust=trust, prefixes=trusted_prefixes(own)
    )
    cfg = validate(OmegaConf.merge(recorded, own))
    model = instantiate_node(cfg.model, "model", trust=trust)
    datamodule = instantiate_node(cfg.data, "data", trust=trust)
    module = TaskModule(model, cfg.optim)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator if cfg.trainer.accelerator != "auto" else "auto",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )
    with tempfile.TemporaryDirectory(prefix="normia-eval-") as scratch:
        # One process reads a sharded (FSDP) checkpoint as one file: consolidated into a scratch file first.
        readable = consolidate(ckpt, Path(scratch) / "model.ckpt") if is_sharded(ckpt) else ckpt
        results = trainer.validate(module, datamodule=datamodule, ckpt_path=str(readable), verbose=False)
    # On a GPU, bad labels were computed as ignored rows (normia.ops defers the check): no metrics, the error.
    bad_targets = deferred_target_error()
    if bad_targets is not None:
        raise bad_targets
    return {k: float(v) for k, v in results[0].items()}
