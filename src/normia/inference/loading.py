"""A trained run, ready to predict: its model (eval mode, CPU), its config and its prediction state.

A run is named by a checkpoint path (`ckpt=outputs/x/<run>/checkpoints/best-330.ckpt`) or by an MLflow run id (`run=`,
looked up in $MLFLOW_TRACKING_URI or ./mlflow.db: its `normia.output_dir` tag gives the run folder, whose done.json
names the best checkpoint). The config used is the run folder's config.yaml, else the copy inside the checkpoint; it
is untrusted data, checked as `normia eval` checks it (config/trust.py) before anything is imported.

The prediction state (class names in index order, training means and stds, date frequency, image shape) comes from
the checkpoint, where normia's data modules save it (data/facts.py); a checkpoint written before they did is served
by rebuilding the run's data module from its config, which reads the training data again.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from normia.errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from torch import nn

RUN_ID = re.compile(r"[0-9a-f]{32}")
PREDICT_KEY = "predict"  # normia.data.facts.PREDICT_KEY (not imported: it would pull numpy for a constant)


@dataclass
class LoadedRun:
    """A run ready to predict.

    model: the trained model, eval mode, on the CPU. cfg: the run's recorded config (checked, not resolved against
    this machine). state: the prediction state (see normia.data.facts). checkpoint: the file the weights came from.
    run_id: the MLflow run id recorded in the checkpoint, or None.
    """

    model: nn.Module
    cfg: DictConfig
    state: dict[str, Any]
    checkpoint: Path
    run_id: str | None
    run_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """'forecast', 'classify', 'regress' or 'language_model'."""
        return str(self.state["kind"])


def load_run(
    source: str | os.PathLike[str], trust: bool = False, tracking_uri: str | None = None
) -> LoadedRun:
    """Load a run from a checkpoint path or an MLflow run id (32 hex digits).

    trust=True skips the config checks (targets, resolvers) and says so on stderr, as `normia eval --trust` does.
    Raises UserError (one line) for a missing checkpoint or run, a run without a local folder, a refused config or
    checkpoint, or a run whose task normia predict does not handle (language models trained on token shards or
    through Hugging Face tokenizers, synthetic data).
    """
    text = os.fspath(source)
    if RUN_ID.fullmatch(text) and not Path(text).exists():
        return load_checkpoint(find_run_checkpoint(text, tracking_uri), trust=trust, expected_run=text)
    return load_checkpoint(Path(text), trust=trust)


def find_run_checkpoint(run_id: str, tracking_uri: str | None = None) -> Path:
    """The best checkpoint (else last.ckpt) of an MLflow run, found through its `normia.output_dir` tag.

    Raises UserError when the store, the run, its folder or its checkpoints cannot be found."""
    from normia.tracking.uri import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise UserError(
            f"no MLflow store at {uri}: run this from the folder that holds mlflow.db, set MLFLOW_TRACKING_URI, "
            "or pass ckpt=PATH instead of run=ID"
        )
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run {run_id} in {uri}: check the id (mlflow ui lists them)") from None
    folder_tag = run.data.tags.get("normia.output_dir")
    if not folder_tag:
        raise UserError(f"MLflow run {run_id} was not written by normia train (no normia.output_dir tag)")
    folder = _run_folder(Path(folder_tag), uri)
    if folder is None:
        raise UserError(
            f"the folder of MLflow run {run_id} ({folder_tag}) is not on this machine: run from the folder it "
            "was trained in, or pass ckpt=PATH"
        )
    return _best_checkpoint(folder, run_id)


def _run_folder(folder: Path, uri: str) -> Path | None:
    """The run folder as recorded (absolute, or relative to the current folder or to the sqlite store's folder)."""
    candidates = [folder]
    if not folder.is_absolute() and uri.startswith("sqlite:///"):
        candidates.append(Path(uri[len("sqlite:///") :]).parent / folder)
    return next((c.resolve() for c in candidates if c.is_dir()), None)


def _best_checkpoint(folder: Path, run_id: str) -> Path:
    from normia.training.checkpoint import is_checkpoint, last_checkpoint

    done = folder / "done.json"
    if done.is_file():
        best = json.loads(done.read_text(encoding="utf-8")).get("best_checkpoint")
        if best:
            path = Path(best)
            for candidate in (path, folder / "checkpoints" / path.name):
                if is_checkpoint(candidate):
                    return candidate.resolve()
    last = last_checkpoint(folder)
    if last is not None:
        return last.resolve()
    raise UserError(f"MLflow run {run_id} left no checkpoint in {folder / 'checkpoints'}")


def load_checkpoint(ckpt: Path, trust: bool = False, expected_run: str | None = None) -> LoadedRun:
    """Rebuild the model of `ckpt` from its run's config and load its weights. See load_run for what is raised."""
    from normia.config.trust import load_untrusted_yaml, trusted_prefixes
    from normia.training.build import instantiate_node
    from normia.training.checkpoint import is_checkpoint, load_checkpoint_file

    if not is_checkpoint(ckpt):
        raise UserError(f"checkpoint {ckpt} does not exist (fix ckpt=)")
    content = load_checkpoint_file(ckpt)  # weights_only: refuses arbitrary unpickling first
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    normia_state = content.get("normia") or {}
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        text, origin = config_file.read_text(encoding="utf-8"), str(config_file)
    elif normia_state.get("config"):
        text, origin = str(normia_state["config"]), f"the config inside {ckpt}"
    else:
        raise UserError(
            f"no config.yaml beside {ckpt}: normia predict needs a checkpoint written by normia train"
        )
    cfg = load_untrusted_yaml(text, origin, trust=trust, prefixes=trusted_prefixes())
    if "model" not in cfg or "data" not in cfg:
        raise UserError(f"{origin} has no model or data section: not a config written by normia train")
    run_id = normia_state.get("mlflow_run_id") or None
    if expected_run and run_id and run_id != expected_run:
        raise UserError(f"checkpoint {ckpt} belongs to MLflow run {run_id}, not {expected_run}")
    state = _predict_state(content, cfg, trust)
    model = instantiate_node(cfg.model, "model", trust=trust)
    weights = {
        k.removeprefix("model."): v for k, v in content["state_dict"].items() if k.startswith("model.")
    }
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise UserError(f"the weights in {ckpt} do not fit the model of its config: {first}") from None
    return LoadedRun(
        model=model.eval(), cfg=cfg, state=state, checkpoint=ckpt.resolve(), run_id=run_id, run_dir=run_dir
    )


def _predict_state(content: dict[str, Any], cfg: DictConfig, trust: bool = False) -> dict[str, Any]:
    """The data module's prediction state saved in the checkpoint, else rebuilt from the training data."""
    target = str(cfg.data.get("_target_", ""))
    class_name = target.rsplit(".", 1)[-1]
    saved = content.get(class_name)
    if class_name == "TextCSVDataModule":  # checked before the model (its pretrained folder) is built
        return _text_table_state(saved, cfg)
    if isinstance(saved, dict) and saved.get(PREDICT_KEY):
        return dict(saved[PREDICT_KEY])
    if (
        class_name == "TextDataModule"
    ):  # a checkpoint written before the module saved its state: from the config
        if cfg.data.get("shards"):
            raise UserError(
                f"normia predict cannot turn prompts into the token ids of the shards {cfg.data.shards} (their "
                "tokenizer is not recorded): it handles byte-level language models (data.path or data.corpus)"
            )
        from normia.data.text import byte_predict_state

        return byte_predict_state(int(cfg.data.get("seq_len") or 256))
    if class_name in ("SyntheticDataModule", "TokenShardsDataModule") or "Text" in class_name:
        raise UserError(
            f"normia predict does not handle this data module ({target}): it predicts for forecasters (series), "
            "classifiers/regressors (tables, images), text classifiers (data=text_csv) and byte-level language "
            "models (data=shakespeare_bytes); "
            "use normia eval for its metrics"
        )
    from normia.training.build import instantiate_node

    datamodule = instantiate_node(
        cfg.data, "data", trust=trust
    )  # an older checkpoint: re-read the training data
    getter = getattr(datamodule, "predict_state", None)
    state = getter() if callable(getter) else None
    if not state:
        raise UserError(
            f"normia predict does not handle the data module {target}: it has no prediction state"
        )
    return dict(state)


def _text_table_state(saved: Any, cfg: DictConfig) -> dict[str, Any]:
    """The prediction state of a text classifier (data=text_csv), checked before its model is built.

    Raises UserError for a token classifier (data.task=tokens), a checkpoint written before TextCSVDataModule saved
    its state, and a model or tokenizer folder that is not on this machine any more."""
    task = str(cfg.data.get("task") or "classification")
    if task == "tokens":
        raise UserError(
            "normia predict does not handle token classifiers (data.task=tokens) yet: it predicts one class per "
            "text (data.task=classification); use normia eval for this run's metrics"
        )
    if not (isinstance(saved, dict) and saved.get(PREDICT_KEY)):
        raise UserError(
            "this checkpoint of a text classifier was written before normia saved the prediction state of "
            "data=text_csv (class names, text column, tokenizer): retrain it with this version of normia"
        )
    state = dict(saved[PREDICT_KEY])
    folders = [("data.tokenizer", str(state.get("tokenizer") or ""))]
    try:
        model_path = cfg.model.get("path")
    except Exception:  # an interpolation this machine cannot resolve: the tokenizer folder is checked anyway
        model_path = None
    if model_path and str(model_path) != folders[0][1]:
        folders.append(("model.path", str(model_path)))
    for key, folder in folders:
        if not folder or not Path(folder).expanduser().is_dir():
            raise UserError(
                f"the pretrained model folder {folder or '(none)'} of this run ({key}) is not on this machine: "
                "the run's model.path must exist here (copy or download the model to that path, or link it there)"
            )
    return state
