"""Small helpers shared by the PoC notebooks: run an experiment in a scratch folder, read it back from MLflow, and
rebuild the trained model from the run's saved config and best checkpoint. Everything goes through the public
`normia` entry points; nothing here is notebook magic."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch


def run_experiment(experiment: str, *overrides: str, workdir: str | Path | None = None) -> dict[str, Any]:
    """`normia train experiment=<name> [overrides]` in-process, writing to a scratch folder; returns the summary."""
    from normia.cli import main

    root = Path(workdir or tempfile.mkdtemp(prefix="normia-notebook-"))
    args = [
        "train",
        f"experiment={experiment}",
        f"paths.output_root={root / 'outputs'}",
        f"logger.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        "logger.system_metrics=false",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    code = main(args)
    if code != 0:
        raise RuntimeError(f"normia train exited with code {code}")
    done = sorted((root / "outputs" / experiment).glob("*/done.json"), key=lambda p: p.stat().st_mtime)[-1]
    return json.loads(done.read_text())


def mlflow_client(summary: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=summary["tracking_uri"])


def metric_history(summary: dict[str, Any], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric of the run, as MLflow recorded it."""
    history = sorted(
        mlflow_client(summary).get_metric_history(summary["mlflow_run_id"], key), key=lambda m: m.step
    )
    return [m.step for m in history], [m.value for m in history]


def load_trained(summary: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """(model with the best checkpoint's weights, in eval mode; its data module), built from the run's config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(summary["output_dir"]) / "config.yaml")
    model = instantiate(cfg.model, _convert_="all")
    checkpoint = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    state = {
        k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
    }
    model.load_state_dict(state)
    return model.eval(), instantiate(cfg.data, _convert_="all")
