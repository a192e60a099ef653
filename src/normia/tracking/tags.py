"""Checks and names decided before an MLflow run exists: the user's tags (a name MLflow refuses would otherwise
crash after the run was created), each run's distinct name, and MLflow's own system tags beside normia's."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from normia.errors import UserError

MAX_TAG_KEY = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
MAX_TAG_VALUE = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
MAX_RUN_NAME = 250


def check_user_tags(tags: Mapping[Any, Any] | None) -> None:
    """Raises UserError naming the first `tags.<name>` MLflow would refuse (bad characters, '..' path parts,
    too long a name or value), with MLflow's own rule."""
    if not tags:
        return  # no MLflow import (~1 s) to check nothing: a job refused later exits sooner
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_tag_name

    for key, value in (tags or {}).items():
        name = str(key)
        try:
            _validate_tag_name(name)
        except MlflowException as err:
            rule = str(err.message).split("supplied: ", 1)[-1].rstrip(".")
            raise UserError(f"tags.{name}: MLflow refuses this tag name ({rule}); rename it") from None
        if len(name) > MAX_TAG_KEY:
            raise UserError(f"tags.{name[:40]}...: a tag name has at most {MAX_TAG_KEY} characters")
        if len(str(value)) > MAX_TAG_VALUE:
            raise UserError(
                f"tags.{name}: its value has {len(str(value))} characters, MLflow keeps {MAX_TAG_VALUE}"
            )


def default_run_name(name: str, output_dir: str, overrides: list[str]) -> str:
    """A distinct, readable run name: '<name> <run folder>' (a time stamp for a single run, the job's folder for a
    sweep job), the overrides when that folder is a bare job number, and the Slurm array task when there is one."""
    folder = Path(output_dir)
    label = f"{name} {folder.name}"
    if folder.name.isdigit():
        label = f"{name} #{folder.name} " + " ".join(o for o in overrides if not o.startswith("experiment="))
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task and not folder.name.isdigit():
        label += f" [task {task}]"
    return label.strip()[:MAX_RUN_NAME]


def system_tags(commit: str | None) -> dict[str, str]:
    """MLflow's standard tags, which its UI shows in the runs table's Source/User columns."""
    tags = {
        "mlflow.source.name": "normia train",  # the one entry that creates runs (normia reproduce goes through it)
        "mlflow.source.type": "JOB" if os.environ.get("SLURM_JOB_ID") else "LOCAL",
        "mlflow.user": _user(),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def dataset_input(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The run's resolved `data` config node, which the tracker turns into MLflow dataset inputs with content
    digests (tracking/data_inputs.py) when the run is created, after data setup and before the first step: reading
    the files there keeps the digest out of the build and of the timed training steps."""
    return dict(data_cfg)
