"""What one finished training run hands back to Python: `normia.train(...)` returns a RunSummary.

Kept import-light (dataclasses and pathlib only): `import normia` must not pull torch, Lightning or MLflow. The
methods that read MLflow or build the model import them when called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run
    from torch import nn

# normia.training.run.DONE: written by rank zero when a run finishes (not when it is stopped)
DONE_FILE = "done.json"
LAST_CHECKPOINT = "last.ckpt"  # normia.training.checkpoint.LAST


@dataclass(frozen=True)
class RunSummary:
    """One finished run, as it wrote itself to `<output_dir>/done.json` (the numbers `normia train` prints).

    Fields:
        name: the experiment's `name` (also the MLflow experiment, by default).
        run_id: the MLflow run id (32 hex digits), or None with `logger=none`.
        output_dir: the run's folder (absolute): config.yaml, done.json, checkpoints/.
        metrics: the last value of every scalar metric the run logged, e.g. {'val/acc': 0.97, 'train/loss': 0.03,
            'lr-AdamW/pg1': 0.003}; units are the metric's own (loss in nats, accuracy a fraction in [0, 1]).
        result: the monitored metric: its best value when a best checkpoint was tracked, else its last value;
            None when the run never logged it. This is what a sweep optimises.
        monitor: the name of the monitored metric (e.g. 'val/acc').
        global_step: optimizer steps taken, over the whole run (a resumed run counts from its start).
        epochs: training epochs completed.
        world_size: processes that trained (trainer.devices x trainer.num_nodes).
        wall_time_s: seconds from the start of the job (this attempt, if resumed) to the end of training.
        checkpoint: the best checkpoint by `monitor`, else checkpoints/last.ckpt; None when none was written.
        tracking_uri: where the MLflow run is, with any user:password removed (masked); None with `logger=none`.
        throughput: {'samples_per_s', 'steps_per_s'} and, for token models, 'tokens_per_s'; empty when not
            measured.
        skipped_steps: steps dropped for a non-finite loss (`trainer.on_nonfinite_loss=skip`); 0 otherwise.
        energy: the energy report (joules, seconds, samples, tokens per phase and what could not be measured),
            as done.json holds it; None when energy accounting was off.
    """

    name: str
    run_id: str | None
    output_dir: Path
    metrics: Mapping[str, float]
    result: float | None
    monitor: str
    global_step: int
    epochs: int
    world_size: int
    wall_time_s: float
    checkpoint: Path | None
    tracking_uri: str | None
    throughput: Mapping[str, float] = field(default_factory=dict)
    skipped_steps: int = 0
    energy: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_output_dir(cls, output_dir: str | os.PathLike[str]) -> RunSummary:
        """Read the summary a finished run wrote to `<output_dir>/done.json`.

        Raises FileNotFoundError when there is none: the run is still going, was stopped (resumable), failed, or was
        a `debug=fast_dev_run` (which records nothing).
        """
        folder = Path(output_dir).resolve()
        done = folder / DONE_FILE
        if not done.is_file():
            raise FileNotFoundError(
                f"{done} does not exist: the run in {folder} has not finished (stopped, failed or still running), "
                "or it recorded nothing (debug=fast_dev_run)"
            )
        return cls.from_dict(json.loads(done.read_text(encoding="utf-8")), folder)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> RunSummary:
        """Build from done.json's dict (normia.training.summary.run_summary); `output_dir` is the run's folder."""
        folder = Path(output_dir).resolve()
        best = data.get("best_checkpoint")
        last = folder / "checkpoints" / LAST_CHECKPOINT
        checkpoint = (
            _absolute(best, folder) if best else (last if last.exists() else None)
        )  # a file or a sharded folder
        result = data.get("result")
        return cls(
            name=str(data["name"]),
            run_id=data.get("mlflow_run_id") or None,
            output_dir=folder,
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items() if v is not None},
            result=float(result) if result is not None else None,
            monitor=str(data["monitor"]),
            global_step=int(data["global_step"]),
            epochs=int(data["epochs"]),
            world_size=int(data["world_size"]),
            wall_time_s=float(data["wall_time_s"]),
            checkpoint=checkpoint,
            tracking_uri=data.get("tracking_uri") or None,
            throughput={str(k): float(v) for k, v in (data.get("throughput") or {}).items()},
            skipped_steps=int(data.get("skipped_steps") or 0),
            energy=data.get("energy"),
        )

    def mlflow_run(self) -> Run:
        """The MLflow run (params, tags, latest metrics), read from `tracking_uri`.

        Raises ValueError for a run without MLflow (`logger=none`).
        """
        return self._client().get_run(self._require_run_id())

    def metric_history(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric as MLflow recorded it, in step order: the x and y of a learning curve.

        Both lists are empty for a key the run never logged. Raises ValueError for a run without MLflow.
        """
        history = sorted(self._client().get_metric_history(self._require_run_id(), key), key=lambda m: m.step)
        return [int(m.step) for m in history], [float(m.value) for m in history]

    def load_model(
        self, config_dir: str | os.PathLike[str] | None = None, trust: bool = False
    ) -> tuple[nn.Module, Any]:
        """(the model with `checkpoint`'s weights, in eval mode on the CPU; the run's data module, not yet set up).

        Both are built from `<output_dir>/config.yaml`, which is checked as any run folder's config is (see
        normia/config/trust.py: only allowed `_target_`s, no resolvers) before anything is imported.
        config_dir: the project whose code the config names, when it is not found from the current folder (as for
        normia.train). trust=True skips the check (only for a folder you or someone you trust wrote).

        Raises UserError for a refused config or checkpoint, FileNotFoundError when the run wrote no checkpoint.
        """
        from normia.api import project_scope

        with project_scope(config_dir):
            return _load_model(self.output_dir, self.checkpoint, trust)

    def predict(
        self,
        data: str | os.PathLike[str] | pd.DataFrame,
        config_dir: str | os.PathLike[str] | None = None,
        trust: bool = False,
    ) -> pd.DataFrame:
        """normia.predict on this run's `checkpoint`: predictions on new data as a DataFrame (see normia.api.predict
        for the layouts). Raises FileNotFoundError when the run wrote no checkpoint, UserError for input that does
        not match the trained model."""
        from normia.api import predict

        if self.checkpoint is None:
            raise FileNotFoundError(f"the run in {self.output_dir} wrote no checkpoint to predict with")
        return predict(self.checkpoint, data, config_dir=config_dir, trust=trust)

    def _require_run_id(self) -> str:
        if not self.run_id:
            raise ValueError(
                f"run '{self.name}' in {self.output_dir} was not tracked in MLflow (logger=none)"
            )
        return self.run_id

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)


def _absolute(path: str, folder: Path) -> Path:
    """A checkpoint path from done.json: Lightning writes it absolute; a relative one is read from the current
    folder when it exists there, else looked up in the run's checkpoints/."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    return candidate.resolve() if candidate.exists() else folder / "checkpoints" / candidate.name


def _load_model(output_dir: Path, checkpoint: Path | None, trust: bool) -> tuple[Any, Any]:
    from normia.config.trust import load_untrusted_yaml, trusted_prefixes
    from normia.training.build import instantiate_node
    from normia.training.checkpoint import load_checkpoint_file

    if checkpoint is None:
        raise FileNotFoundError(
            f"the run in {output_dir} wrote no checkpoint (callbacks.checkpoint disabled?)"
        )
    config_file = output_dir / "config.yaml"
    cfg = load_untrusted_yaml(
        config_file.read_text(encoding="utf-8"), str(config_file), trust=trust, prefixes=trusted_prefixes()
    )
    model = instantiate_node(cfg.model, "model", trust=trust)
    state = load_checkpoint_file(checkpoint)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), instantiate_node(cfg.data, "data", trust=trust)
