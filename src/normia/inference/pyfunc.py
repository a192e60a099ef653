"""A trained run as an MLflow model (`python_function` flavour) in the Model Registry.

MLflow's own format and registry rather than one of ours: `mlflow models serve`, `mlflow.pyfunc.load_model`, the
registry's versions and stages, and every tool that reads MLmodel files work on it as they are (a well-kept library
beats our code). The model's `predict` takes the same table as `normia predict` (predictors.py) and returns the same
numbers. It holds no pickle: its MLmodel names a loader module (pyfunc_loader.py) and its data are the run's config
(YAML) and a slimmed checkpoint (weights and prediction state, read with weights_only). The registered version is
tagged with the sha256 of each of its files (artifact_digests.py), checked before normia loads it (registered.py).
A language model's signature also declares its generation options as MLflow params (max_new_tokens, temperature,
seed; REST: `{"dataframe_split": ..., "params": {"max_new_tokens": 50}}`), with normia predict's defaults.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from normia.errors import UserError
from normia.inference.pyfunc_loader import ARTIFACT, CHECKPOINT, NormiaModel, json_safe

if TYPE_CHECKING:
    import pandas as pd

    from normia.inference.loading import LoadedRun

__all__ = ["ARTIFACT", "CHECKPOINT", "NormiaPyfuncModel", "export_run", "json_safe"]


class NormiaPyfuncModel:
    """The exported model with MLflow's PythonModel methods (load_context, predict(context, ...)), for code that
    drives it by hand. It is not a PythonModel and is never pickled: normia export logs pyfunc_loader instead."""

    def load_context(self, context: Any) -> None:
        """Rebuild the model from `context.artifacts[ARTIFACT]` (see NormiaModel.from_folder)."""
        self.model = NormiaModel.from_folder(Path(context.artifacts[ARTIFACT]))
        self.run = self.model.run

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """See NormiaModel.predict."""
        return self.model.predict(model_input, params)


@dataclass(frozen=True)
class Exported:
    """What normia export did: the registered name and version, the model's URI, the export run's id and the
    training run and checkpoint the model came from."""

    name: str
    version: int
    model_uri: str
    export_run_id: str
    source_run_id: str | None
    checkpoint: Path


def slim_checkpoint(run: LoadedRun, target: Path) -> None:
    """Only what prediction needs from `run.checkpoint`: weights, the prediction state, normia's section."""
    import torch

    from normia.training.checkpoint import load_checkpoint_file

    content = load_checkpoint_file(run.checkpoint)
    # normia's section without its copy of the config (resolved, unredacted): the redacted config.yaml is beside it
    recorded = content.get("normia") or {}
    keep = {"state_dict": content["state_dict"], "normia": {"mlflow_run_id": recorded.get("mlflow_run_id")}}
    class_name = str(run.cfg.data.get("_target_", "")).rsplit(".", 1)[-1]
    keep[class_name] = {"predict": run.state}
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(keep, target)


PROGRAM_FORMATS = (
    "export",
    "torchscript",
)  # besides the pyfunc model: torch.export (.pt2) or TorchScript (.pt)
TOLERANCE = 1e-4  # the largest |program - eager| accepted on the input example, in the model's output units


def model_inputs(run: LoadedRun, example: pd.DataFrame) -> Any:
    """The tensor predict_frame hands the model for `example` (captured by a forward pre-hook): the input of an
    exported program, batch first. Raises UserError as predict_frame does."""
    from normia.inference.predictors import predict_frame

    captured: list[Any] = []
    handle = run.model.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        predict_frame(run, example, source="the input example")
    finally:
        handle.remove()
    return captured[0]


def build_program(run: LoadedRun, example: pd.DataFrame, fmt: str, folder: Path) -> tuple[Path, float]:
    """Write the model as a torch.export program (`model.pt2`, dynamic batch size) or a TorchScript trace
    (`model.pt`) and check it against eager PyTorch on the example's inputs (batch of at least 2).

    Returns (the file, the largest absolute difference). Raises UserError when the export fails or differs by
    more than TOLERANCE."""
    import torch

    from normia.inference.predictors import input_kind

    if input_kind(run) == "text_table":
        raise UserError(
            f"format={fmt} is not available for a text classifier (its inputs are token ids and a mask made by its "
            "tokenizer): export it as pyfunc (the default), whose predict tokenises as normia predict does"
        )
    if input_kind(run) == "text":
        raise UserError(
            f"format={fmt} exports a fixed-shape program; a language model's generation loop is not one: export "
            "it as pyfunc (the default), whose predict generates as normia predict does"
        )
    inputs = model_inputs(run, example)
    if inputs.shape[0] < 2:  # a batch of one would be specialised to 1
        inputs = torch.cat([inputs, inputs])
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad():
            if fmt == "export":
                batch = torch.export.Dim("batch", min=1, max=1 << 20)
                program = torch.export.export(run.model, (inputs,), dynamic_shapes=({0: batch},))
                target = folder / "model.pt2"
                torch.export.save(program, target)
                reloaded = torch.export.load(target).module()
            else:
                target = folder / "model.pt"
                torch.jit.save(torch.jit.trace(run.model, inputs), str(target))
                reloaded = torch.jit.load(str(target))
            error = float((reloaded(inputs) - run.model(inputs)).abs().max())
    except Exception as err:  # torch.export / jit raise many types; the user needs the first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"format={fmt}: {type(run.model).__name__} could not be exported: {first}") from None
    if not error <= TOLERANCE:
        raise UserError(
            f"format={fmt}: the exported model differs from eager PyTorch by {error:.3g} (> {TOLERANCE}) on the "
            "input example; nothing was logged"
        )
    return target, error


# What a models:/NAME/VERSION URI can address: '?', '#', '/', ':', '%', spaces and the like register fine and are then
# read as the URI's query, fragment or path, so the model can never be loaded by name (issue 25 B).
REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_registered_name(name: str | None) -> None:
    """Raise UserError unless `name` can be loaded back as models:/NAME/VERSION."""
    if not name or not REGISTERED_NAME.fullmatch(name):
        raise UserError(
            f"registered_name={name!r}: models:/{name}/1 could not load it; use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )


def registered_name_of(run_name: str) -> str:
    """A registrable name from a run's `name` (which may hold spaces or '/'), for an export given none."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_name).strip("-._") or "normia-model"


def export_run(
    run: LoadedRun,
    example: pd.DataFrame,
    registered_name: str,
    tracking_uri: str,
    program_format: str | None = None,
) -> Exported:
    """Log `run` as an MLflow pyfunc model (signature and input example from `example`; no pickle), register a
    version under `registered_name`, and tag the export run and the version with the source run and checkpoint, and
    the version with the sha256 of each file of the model as stored (tag normia.sha256, set as it is created).

    program_format: 'export' (torch.export) or 'torchscript' also logs the model in that form to the export run
    (artifact `program/`, metric `export/max_abs_error`: its check against eager PyTorch on the example).

    Everything that can fail on bad input (the example's predictions, the signature) is checked before an MLflow run
    is created; if logging fails after that, the export run is deleted. Raises UserError for a refused name."""
    import mlflow
    import torch
    from mlflow.artifacts import download_artifacts
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from normia import __version__
    from normia.config.secrets import redact
    from normia.inference.artifact_digests import TAG, encode, file_digests
    from normia.inference.predictors import predict_frame

    check_registered_name(registered_name)
    from normia.inference.predictors import input_kind

    params = None
    if input_kind(run) == "text":
        from normia.inference.language import DEFAULTS

        params = dict(DEFAULTS)
        params["temperature"] = float(params["temperature"])  # a float param, not an int one
    output = json_safe(predict_frame(run, example, source="the input example"))
    signature = infer_signature(example, output, params=params)
    client = MlflowClient(tracking_uri=tracking_uri)
    tags = {
        "normia.source_run_id": run.run_id or "",
        "normia.source_checkpoint": str(run.checkpoint),
        "normia.export": "pyfunc",
    }
    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory(prefix="normia-export-") as scratch:
        program: tuple[Path, float] | None = None
        if program_format is not None:  # checked before any MLflow run exists
            program = build_program(run, example, program_format, Path(scratch) / "program")
        experiment = _experiment(client, run)
        folder = Path(scratch) / ARTIFACT
        slim_checkpoint(run, folder / CHECKPOINT)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(redact(run.cfg)), encoding="utf-8")
        # log_model writes through the fluent API's store; mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI,
        # so the caller's value (None: unset, MLflow's default) is put back afterwards
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(tracking_uri)
        active = client.create_run(experiment, run_name=f"export-{registered_name}", tags=tags)
        export_id = active.info.run_id
        try:
            with mlflow.start_run(run_id=export_id):
                info = _log_model(
                    folder,
                    signature,
                    example,
                    [
                        f"normia=={__version__}",
                        f"torch=={torch.__version__.split('+')[0]}",
                        f"mlflow=={mlflow.__version__}",
                    ],
                )
                logged = Path(scratch) / "logged"
                logged.mkdir()
                digests = file_digests(Path(download_artifacts(info.model_uri, dst_path=str(logged))))
                registered = mlflow.register_model(
                    info.model_uri,
                    registered_name,
                    await_registration_for=60,
                    tags={**tags, TAG: encode(digests)},
                )
                if program is not None:
                    client.log_artifact(export_id, str(program[0]), "program")
                    client.log_metric(export_id, "export/max_abs_error", program[1])
                    client.set_tag(
                        export_id, "normia.export.program", f"{program_format}: program/{program[0].name}"
                    )
        except BaseException:
            client.delete_run(export_id)
            raise
        finally:
            mlflow.set_tracking_uri(previous)
    version = int(registered.version)
    return Exported(
        name=registered_name,
        version=version,
        model_uri=f"models:/{registered_name}/{version}",
        export_run_id=export_id,
        source_run_id=run.run_id,
        checkpoint=run.checkpoint,
    )


def _log_model(folder: Path, signature: Any, example: pd.DataFrame, requirements: list[str]) -> Any:
    """Log the data folder as a pyfunc model loaded by pyfunc_loader (no python_model, so no pickle) to the active
    run; returns MLflow's ModelInfo. MLflow test-loads it on the input example: that load is not a registered one."""
    import mlflow

    from normia.inference import pyfunc_loader

    pyfunc_loader.QUIET_UNREGISTERED = True
    try:
        return mlflow.pyfunc.log_model(
            name="model",
            loader_module=pyfunc_loader.__name__,
            data_path=str(folder),
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
        )
    finally:
        pyfunc_loader.QUIET_UNREGISTERED = False


def _experiment(client: Any, run: LoadedRun) -> str:
    """The experiment of the training run when this store has it, else the run's configured one (created)."""
    from mlflow.exceptions import MlflowException

    if run.run_id:
        try:
            return str(client.get_run(run.run_id).info.experiment_id)
        except MlflowException:
            pass
    name = str(run.cfg.get("logger", {}).get("experiment_name") or run.cfg.get("name") or "normia")
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id) if found else str(client.create_experiment(name))


def example_input(run: LoadedRun, data_path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """A small table in the layout predict takes, for the model's signature and input example: from `data_path`
    when given, else from the run's training data (its file, statsmodels' series, sklearn's digits, the first images).

    Raises UserError when neither is readable here."""
    import pandas as pd

    from normia.inference.predictors import image_frame, input_kind, predict_frame, read_input

    kind = input_kind(run)
    from normia.data.corpus_choice import chosen_corpus

    data = run.cfg.data
    if data_path is not None:
        frame = read_input(run, data_path)
    elif kind == "text":
        from normia.inference.language import example_prompts

        frame = example_prompts(run)
    elif kind == "text_table" and chosen_corpus(data):
        from normia.data.text_csv import bundled_tables

        frame = read_input(run, bundled_tables()[str(chosen_corpus(data))])
    elif kind == "series" and data.get("path"):
        frame = read_input(run, str(data.path))
    elif kind == "series":
        from normia.data.series import statsmodels_series

        frame = statsmodels_series(str(data.dataset))
        frame[frame.columns[0]] = pd.DatetimeIndex(frame.iloc[:, 0]).strftime("%Y-%m-%d")
    elif kind == "table":
        frame = read_input(run, str(data.path))
    elif kind == "digits":
        from sklearn.datasets import load_digits

        pixels = load_digits().data[:5]
        frame = pd.DataFrame(pixels, columns=[f"pixel_{i}" for i in range(64)])
    elif data.get("root") and not data.get("path"):
        from normia.inference.predictors import _image_files

        root = Path(str(data.root)).expanduser()
        if not root.is_dir():
            raise UserError(
                f"the training images {root} are not here: give data.path=FILE for the input example"
            )
        frame = image_frame(_image_files(root)[:3], "file", root=root)
    else:
        frame = read_input(run, str(data.path))
    if kind == "text_table":  # the label is no input: the signature asks for the text and identifiers only
        frame = frame.drop(columns=[str(run.state.get("label"))], errors="ignore")
    if kind != "series":
        return frame.head(5).reset_index(drop=True)
    rows = int(run.state["input_len"])
    while True:  # the shortest tail that still gives a full window after resampling
        tail = frame.tail(rows).reset_index(drop=True)
        try:
            predict_frame(run, tail)
            return tail
        except UserError:
            if rows >= len(frame):
                raise
            rows = min(len(frame), rows * 2)
