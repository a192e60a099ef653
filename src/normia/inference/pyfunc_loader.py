"""MLflow's loader module for a model written by normia export (its MLmodel: `loader_module:
normia.inference.pyfunc_loader`, `data: data/normia_run`): the model is plain data files, never a pickle.

data/normia_run/config.yaml is the run's config, read as YAML data and checked as normia predict checks a recorded
config (config/trust.py) before any class is built; data/normia_run/checkpoints/model.ckpt holds the weights and the
prediction state, read with torch.load(weights_only=True). Loaded as models:/NAME/VERSION, every file of the model
is first compared with the sha256 recorded at export (registered.py). Imported by MLflow when it loads the model:
kept light (torch, pandas and MLflow are imported inside the functions).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from normia.inference.loading import LoadedRun

ARTIFACT = "normia_run"  # the model's data folder: config.yaml and checkpoints/model.ckpt
CHECKPOINT = "checkpoints/model.ckpt"
QUIET_UNREGISTERED = False  # set by normia export while MLflow test-loads the model it is logging


class NormiaModel:
    """The loaded model: predict takes the table normia predict reads and returns its predictions."""

    def __init__(self, run: LoadedRun) -> None:
        self.run = run

    @classmethod
    def from_folder(cls, folder: Path) -> NormiaModel:
        """Rebuild the run from a data folder (config.yaml, checkpoints/model.ckpt). Raises UserError for a refused
        config or checkpoint (normia.inference.loading.load_checkpoint)."""
        from normia.inference.loading import load_checkpoint

        return cls(load_checkpoint(folder / CHECKPOINT))

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """model_input: the table normia predict reads (see predictors.py); params: a language model's generation
        options (MLflow fills in the signature's defaults). Returns predictors.predict_frame's table with dates as
        ISO text. Raises UserError for input the model does not take."""
        from normia.inference.predictors import input_kind, predict_frame

        options = dict(params or {}) if input_kind(self.run) == "text" else None
        return json_safe(predict_frame(self.run, model_input, source="the request", options=options))


def _load_pyfunc(data_path: str) -> NormiaModel:
    """MLflow's entry point (`mlflow.pyfunc.load_model`, `mlflow models serve`): check the model's files against
    the registered version's digests, then rebuild it from `data_path`.

    Raises UserError naming the first file whose sha256 differs, for a registered version without a digest tag,
    and as NormiaModel.from_folder does."""
    from normia.inference.registered import check_model_folder

    folder = Path(data_path)
    check_model_folder(
        folder.parents[1], quiet_unregistered=QUIET_UNREGISTERED
    )  # data/normia_run -> the model
    return NormiaModel.from_folder(folder)


def json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as ISO dates (YYYY-MM-DD, or with the time when it is not midnight): REST answers are JSON."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            times = pd.DatetimeIndex(out[column])
            fmt = "%Y-%m-%d" if (times == times.normalize()).all() else "%Y-%m-%dT%H:%M:%S"
            out[column] = times.strftime(fmt)
    return out
