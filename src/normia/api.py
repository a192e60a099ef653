"""normia's Python API for notebooks and scripts: `normia.compose`, `normia.train`, `normia.load_run`, `normia.predict`.

They do what `normia train <overrides> --cfg` and `normia train <overrides>` do for one job on this machine: the same
composition, validation and trust checks, the same output folders, the same run (local DDP included), the same
MLflow record. Where the CLI prints `error: ...` and exits 2, these raise normia.errors.UserError with that message.

Kept import-light: Hydra, Lightning, torch and MLflow are imported when a function is called, not by this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from normia.errors import UserError
from normia.run_summary import RunSummary

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig
    from torch import nn

__all__ = [
    "RunFailed",
    "RunStopped",
    "RunSummary",
    "compose",
    "load_run",
    "predict",
    "project_scope",
    "train",
]

STOPPED = 130  # run_job's code for a run stopped by Ctrl-C / SIGINT (the CLI's exit status)


class RunFailed(RuntimeError):
    """A run that started did not finish and left no summary.

    Attributes: output_dir (the run's folder, absolute), exit_code (what `normia train` would have exited with).
    """

    def __init__(self, message: str, output_dir: Path, exit_code: int):
        super().__init__(message)
        self.output_dir = output_dir
        self.exit_code = exit_code


class RunStopped(RunFailed):
    """The run was stopped at a step boundary (Ctrl-C, a notebook's interrupt, SIGINT/SIGTERM) and is resumable:
    checkpoints/last.ckpt holds it and its MLflow run is KILLED. exit_code is 130.

    resume_override: the override to add to the same overrides to continue it (same folder, same MLflow run).
    """

    def __init__(self, output_dir: Path):
        self.resume_override = _override_text("resume", str(output_dir))
        super().__init__(
            f"the run was stopped before it finished; its checkpoint is in {output_dir / 'checkpoints'}. "
            f"Resume it with the same overrides plus {self.resume_override!r}",
            output_dir,
            STOPPED,
        )


def compose(overrides: Sequence[str] = (), config_dir: str | os.PathLike[str] | None = None) -> DictConfig:
    """The validated config of one job: what `normia train <overrides> --cfg` prints, secrets not masked.

    overrides: Hydra overrides as typed on the command line, e.g. ['experiment=quickstart', 'optim.lr=1e-3'].
    config_dir: a project's config folder, layered over normia's (its options win a name clash; its code becomes
        importable), as `--config-dir` does. None: the project around the current folder (or NORMIA_CONFIG_PATH),
        else normia's configs alone. The environment is as before once the call returns.

    The result has `paths.output_dir` assigned as the CLI assigns it (a new timestamped folder under
    paths.output_root, or the run being resumed); nothing is created or run. Print it with
    `OmegaConf.to_yaml(normia.config.secrets.redact(cfg))` to mask secrets as the CLI does.

    Raises UserError (the CLI's one-line message) for an override that does not parse, a sweep (`a=1,2`), an unknown
    group, option or key, a wrong type, a refused `_target_` or a missing config folder; TypeError when overrides is
    a single string.
    """
    texts = _override_list(overrides)
    with project_scope(config_dir):
        return _compose_one(texts, "normia.compose")


def train(overrides: Sequence[str] = (), config_dir: str | os.PathLike[str] | None = None) -> RunSummary:
    """Train one job on this machine, as `normia train <overrides>` does with launcher=local, and return its summary.

    overrides, config_dir: as for normia.compose. `trainer.devices=N` (N > 1) starts N local processes (DDP/FSDP) as
    the CLI does; `resume=true` continues the latest run. Outputs go to paths.output_root (default `outputs/` in the
    current folder) and, with logger=mlflow, to $MLFLOW_TRACKING_URI or `sqlite:///mlflow.db` in the current folder.

    Returns the RunSummary read from the run's done.json (see normia.run_summary.RunSummary for its fields).

    Raises:
        UserError: what the CLI refuses with exit code 2, before anything runs (same message): a bad override, a
            sweep, an unwritable output folder, an unreachable MLflow server, too few GPUs; also a launcher other
            than local (use the CLI for clusters), launcher.dry_run=true and debug=fast_dev_run (neither leaves a
            summary). During the run: a refused setting or input (the same as the CLI), or a local rank that failed.
        TrainingDiverged (a UserError, exit code 3): the training loss became nan or inf; the run is marked FAILED.
        RunStopped (a RunFailed): stopped by Ctrl-C or a signal; resumable, see its resume_override.
        RunFailed (a RuntimeError): the run ended with another non-zero code or wrote no summary; see output_dir.
    Any other exception raised by a model or data module's code propagates as it is.
    """
    texts = _override_list(overrides)
    with project_scope(config_dir):
        cfg = _compose_one(texts, "normia.train")
        _refuse_other_runs(cfg)
        from normia.training.cli import run_job
        from normia.training.preflight import preflight_local

        preflight_local(cfg)
        output_dir = Path(str(cfg.paths.output_dir)).resolve()
        code = run_job(cfg)
    return _summary(code, output_dir)


def load_run(
    run_id_or_ckpt: str | os.PathLike[str],
    config_dir: str | os.PathLike[str] | None = None,
    trust: bool = False,
) -> tuple[nn.Module, DictConfig]:
    """(the trained model in eval mode on the CPU, the run's recorded config) of a checkpoint path or an MLflow run
    id (32 hex digits, looked up in $MLFLOW_TRACKING_URI or ./mlflow.db; the run's folder must be on this machine).

    The recorded config is untrusted data, checked as `normia eval` checks it (allowed targets, no resolvers) before
    anything is imported; trust=True skips that (only for a run you or someone you trust wrote). config_dir: the
    project whose code the config names, as for normia.train.

    Raises UserError (one line) for a missing checkpoint or run, or a refused config or checkpoint.
    """
    from normia.inference.loading import load_run as load

    with project_scope(config_dir):
        run = load(run_id_or_ckpt, trust=trust)
    return run.model, run.cfg


def predict(
    run_id_or_ckpt: str | os.PathLike[str],
    data: str | os.PathLike[str] | pd.DataFrame,
    config_dir: str | os.PathLike[str] | None = None,
    trust: bool = False,
    *,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Predictions of a trained run on new data, as `normia predict` writes them, with the run's training statistics.

    data: a file or folder in the layout the run trained on (a series CSV with its date column, a table with the
        feature columns, a folder of images or a label table, 64 digit pixel columns), or that table as a DataFrame
        (images: a file-name column and an `image` column of base64 file bytes).
    Returns a DataFrame: forecasters, one row per forecast date (the date column, then each target column in the
    data's units); classifiers, one row per input row (its identifying columns or file name, `class`, `p_<class>`
    per class); regressors, the target column in its units; byte-level language models (data: a `prompt` column),
    one row per prompt: the input's columns, `continuation` (text), `mean_logprob` (nats per byte of the prompt) and
    `bits_per_byte`.

    max_new_tokens (default 100), temperature (default 0: greedy, deterministic) and seed (default 0, for
    temperature > 0): a language model's generation options (see normia.inference.language); refused for others.

    Raises UserError (one line) for input that does not match the trained model (a missing column, another date
    frequency, too short a history, another image size, no prompt) and for what load_run refuses.
    """
    from normia.inference.loading import load_run as load
    from normia.inference.predictors import predict_frame, read_input

    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    with project_scope(config_dir):
        run = load(run_id_or_ckpt, trust=trust)
        if isinstance(data, (str, os.PathLike)):
            return predict_frame(run, read_input(run, data), source=os.fspath(data), options=options)
        return predict_frame(run, data, options=options)


def predict_to(
    source: str,
    data_path: str,
    output: str | None,
    config_dir: str | os.PathLike[str] | None = None,
    trust: bool = False,
    options: dict[str, str] | None = None,
) -> int:
    """`normia predict`: predict on `data_path` and write the table to `output` in the input's conventions (CSV
    separator, decimal mark, date format), or to stdout when output is None. Returns the number of rows written.
    options: a language model's generation options as given on the command line (text values).
    Nothing is written when anything fails (UserError as for predict)."""
    import sys

    from normia.inference.loading import load_run as load
    from normia.inference.predictors import conventions, predict_frame, read_input, to_csv_text, write_table

    with project_scope(config_dir):
        run = load(source, trust=trust)
        frame = read_input(run, data_path)
        result = predict_frame(run, frame, source=data_path, options=options)
    style = conventions(frame)
    if output:
        write_table(result, output, style)
    else:
        sys.stdout.write(to_csv_text(result, style))
    return len(result)


@contextlib.contextmanager
def project_scope(config_dir: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Within the block, the project of `config_dir` (or the one around the current folder, when None) is active:
    its config folders in NORMIA_CONFIG_PATH and its code on sys.path and PYTHONPATH, for this process and the
    processes it starts. Both variables are restored afterwards; sys.path keeps the project's code folders (the
    modules imported from them stay loaded). Raises UserError for a config_dir that is not a folder."""
    from normia.project import CONFIG_PATH_ENV, activate, current_project, project_from_config_dir

    saved = {name: os.environ.get(name) for name in (CONFIG_PATH_ENV, "PYTHONPATH")}
    try:
        if config_dir is None:
            activate(current_project())
        else:
            project = project_from_config_dir([os.fspath(config_dir)], origin="config_dir")
            os.environ.pop(CONFIG_PATH_ENV, None)  # the folder given here replaces the environment's
            activate(project)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _override_list(overrides: Sequence[str]) -> list[str]:
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"overrides is a list of strings, e.g. [{overrides!r}], not one string")
    texts = list(overrides)
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(
                f"each override is a string like 'optim.lr=1e-3', not {type(text).__name__} {text!r}"
            )
    return texts


def _compose_one(overrides: list[str], caller: str) -> DictConfig:
    """The CLI's checks for one job (no -m): a sweep is refused, then compose_jobs composes and validates."""
    from normia.config.overrides import parse_override
    from normia.training.cli import compose_jobs

    for text in overrides:
        if parse_override(text).is_sweep_override():
            raise UserError(
                f"'{text}' lists several values: {caller} takes one job; call it once per value, "
                "or sweep from a terminal with normia train -m"
            )
    jobs, _ = compose_jobs(overrides, multirun=False)
    return jobs[0]


def _refuse_other_runs(cfg: DictConfig) -> None:
    """What the CLI accepts but train() cannot return a RunSummary for."""
    if str(cfg.launcher.name) != "local":
        raise UserError(
            f"launcher={cfg.launcher.name} submits to a cluster: run it from a terminal with "
            "normia train ... (normia.train runs on this machine, launcher=local)"
        )
    if cfg.launcher.get("dry_run", False):
        raise UserError(
            "launcher.dry_run=true runs nothing: use normia.compose(...) to validate without training"
        )
    if cfg.trainer.fast_dev_run:
        raise UserError(
            "debug=fast_dev_run records nothing, so normia.train has no summary to return: "
            "run it from a terminal with normia train ... debug=fast_dev_run"
        )


def _summary(code: int, output_dir: Path) -> RunSummary:
    """The RunSummary of a run that returned `code`, or the exception that says why there is none."""
    from normia.training.spawn import DIVERGED  # how a local multi-process run reports a diverged loss

    if code == STOPPED:
        raise RunStopped(output_dir)
    if code == DIVERGED:
        from normia.training.health import TrainingDiverged

        raise TrainingDiverged(
            f"training diverged: the loss became nan or inf (the log above says at which step); the run in "
            f"{output_dir} is marked FAILED. Lower optim.lr or set trainer.gradient_clip_val, or "
            "trainer.on_nonfinite_loss=skip to skip such steps"
        )
    if code != 0:
        raise RunFailed(f"the run in {output_dir} ended with exit code {code}", output_dir, code)
    try:
        return RunSummary.from_output_dir(output_dir)
    except FileNotFoundError as err:
        raise RunFailed(str(err), output_dir, code) from None


def _override_text(key: str, value: str) -> str:
    """`key=value` as one element of an overrides list (no shell quoting): quoted for Hydra when it would not read
    the value back as this exact string (a path holding '=', a space, a comma)."""
    from normia.config.overrides import parse_override

    plain = f"{key}={value}"
    try:
        if parse_override(plain).value() == value:
            return plain
    except UserError:
        pass
    quote = "'" if '"' in value else '"'
    return f"{key}={quote}{value}{quote}"
