"""What a data module knows that its model needs for honest metrics, and what prediction needs later.

Two channels, both owned by the data modules:

- `share_with_model`: when Lightning sets a data module up (fit, validate), the module hands its model facts fitted
  on the training split (the standardisation scale of a forecaster's targets, the majority class of a classifier's
  training labels). A model that defines `set_data_facts(**facts)` uses them to log metrics in the data's own units
  (`mae_orig`) and its baseline (`acc_majority`); other models are left alone.
- `predict_state`: the statistics and names that `normia predict` needs (means and stds, class names in index order,
  columns, frequency, image shape). Each data module returns them from `predict_state()` and adds them to its
  `state_dict()`, which Lightning saves in every checkpoint, so prediction never has to re-read the training data.
  Values are plain lists, strings and numbers: checkpoints load with torch.load(weights_only=True).
"""

from __future__ import annotations

from typing import Any

PREDICT_KEY = "predict"  # the key of the prediction state inside a data module's state_dict


def share_with_model(datamodule: Any, **facts: Any) -> None:
    """Call `set_data_facts(**facts)` on the model being trained or validated, when there is one that accepts them.

    A data module built outside a Trainer (tests, normia predict) has no trainer: nothing happens."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return
    module = getattr(trainer, "lightning_module", None)
    model = getattr(module, "model", None)
    setter = getattr(model, "set_data_facts", None)
    if callable(setter):
        setter(**facts)


def with_predict_state(state: dict[str, Any], predict: dict[str, Any] | None) -> dict[str, Any]:
    """A data module's state_dict with its prediction state added (when it has one yet)."""
    return {**state, PREDICT_KEY: predict} if predict else state


def plain(values: Any) -> list[float]:
    """A numpy array (any shape) as a flat list of Python floats, for a weights_only checkpoint."""
    import numpy as np

    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


# the run's copy of its prediction state (class names, statistics), logged as an MLflow artifact
PREDICT_ARTIFACT = "normia/predict_state.json"
UNITS_TAG = "normia.data.units"  # the data's units, when the data config names them (data.units)


class RecordsPredictState:
    """Mixin for a data module (before ResumableDataModule in the bases): once training has started, rank zero logs
    the prediction state to the run's MLflow store as the artifact `normia/predict_state.json` (class names in index
    order, training means and stds, columns, frequency), so the run itself says what "2" means.

    Uses the public Lightning Logger interface only (`logger.experiment` is the MlflowClient, `logger.version` the
    run id) and only once the run exists (the first training batch); without an MLflow logger nothing happens.
    """

    _recorded_predict_state = False

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self._recorded_predict_state:
            self._record_predict_state()
        return super().on_before_batch_transfer(batch, dataloader_idx)  # type: ignore[misc]

    def _record_predict_state(self) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.training:
            return
        self._recorded_predict_state = True
        state = self.predict_state()  # type: ignore[attr-defined]
        logger = trainer.logger
        if not state or logger is None or not trainer.is_global_zero:
            return
        client, run_id = getattr(logger, "experiment", None), getattr(logger, "version", None)
        if run_id and callable(getattr(client, "log_dict", None)):
            client.log_dict(str(run_id), state, PREDICT_ARTIFACT)
            if state.get("units"):  # the unit of the *_orig metrics, e.g. 'MAE 3.46 µg/m3'
                client.set_tag(str(run_id), UNITS_TAG, str(state["units"]))
