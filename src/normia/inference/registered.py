"""A registered model's files checked against the sha256 recorded at export (tag normia.sha256), before normia
loads them: by MLflow's loader (pyfunc_loader, under `mlflow models serve` and `mlflow.pyfunc.load_model`) and by
`normia export verify=models:/NAME/VERSION`, which also checks the files MLflow reads before normia's loader runs
(MLmodel, the environment files)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from normia.errors import UserError
from normia.inference.artifact_digests import TAG, check_digests, decode

META = "registered_model_meta"  # written by MLflow beside MLmodel when it downloads models:/NAME/VERSION
LOADER = "normia.inference.pyfunc_loader"
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def recorded_digests(name: str, version: str, tracking_uri: str | None = None) -> dict[str, str]:
    """The digests recorded on version `version` of registered model `name`.

    Raises UserError when the version is not in the registry, or has no digest tag (a model exported before normia
    recorded one holds a cloudpickle, and a removed tag hides any change: both are refused), or a malformed one."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    origin = f"models:/{name}/{version}"
    try:
        found = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version(
            name, version
        )
    except MlflowException as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{origin} is not in the Model Registry: {first}") from None
    value = found.tags.get(TAG)
    if not value:
        raise UserError(
            f"{origin} has no {TAG} tag (the sha256 of its files, written by normia export): its files cannot be "
            "checked, so it is not loaded; export the run again with this version of normia"
        )
    return decode(value, origin)


def registered_version(root: Path) -> tuple[str, str] | None:
    """(name, version) of a model folder MLflow downloaded from models:/NAME/VERSION, else None (a local folder, a
    runs:/ or logged-model URI)."""
    import yaml

    meta = root / META
    if not meta.is_file():
        return None
    info = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
    name, version = info.get("model_name"), info.get("model_version")
    return (str(name), str(version)) if name and version else None


def check_model_folder(root: Path, quiet_unregistered: bool = False) -> str | None:
    """Check a model folder MLflow is loading against its registered version's digests; returns that version's
    URI, or None (with a warning on stderr unless quiet_unregistered) when the folder names no registered version.

    Raises UserError as recorded_digests and artifact_digests.check_digests do."""
    found = registered_version(root)
    if found is None:
        if not quiet_unregistered:
            print(
                f"warning: normia: the model in {root} was not loaded as models:/NAME/VERSION: its files are not "
                f"checked against the registry's {TAG} tag",
                file=sys.stderr,
            )
        return None
    uri = f"models:/{found[0]}/{found[1]}"
    check_digests(root, recorded_digests(*found), uri)
    return uri


def verify_registered(model_uri: str, tracking_uri: str) -> tuple[int, Any]:
    """Download `model_uri` (models:/NAME/VERSION) from `tracking_uri`, check every file against the version's
    digest tag and that MLmodel names normia's loader, then load that checked copy with mlflow.pyfunc.

    Returns (the number of files checked, the loaded PyFuncModel). Raises UserError for a URI that is not
    models:/NAME/VERSION, a version that is missing or untagged, a file whose sha256 differs, and a model that is
    not normia's."""
    import mlflow
    import yaml

    from normia.inference.artifact_digests import file_digests

    parts = model_uri.removeprefix("models:/").split("/")
    if not model_uri.startswith("models:/") or len(parts) != 2 or not parts[1].isdigit():
        raise UserError(f"verify={model_uri}: give a registered version as models:/NAME/VERSION")
    expected = recorded_digests(parts[0], parts[1], tracking_uri)  # before any download
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # mlflow.set_tracking_uri also sets it: put back after
    bar = os.environ.get(PROGRESS_BAR)
    mlflow.set_tracking_uri(tracking_uri)
    os.environ[PROGRESS_BAR] = "false"  # a refusal stays one line on stderr
    try:
        with tempfile.TemporaryDirectory(prefix="normia-verify-") as scratch:
            root = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch))
            check_digests(root, expected, model_uri)
            flavor = (yaml.safe_load((root / "MLmodel").read_text(encoding="utf-8")) or {}).get("flavors", {})
            loader = (flavor.get("python_function") or {}).get("loader_module")
            if loader != LOADER:
                raise UserError(
                    f"{model_uri} is not a model written by normia export (its loader is {loader})"
                )
            return len(file_digests(root)), mlflow.pyfunc.load_model(str(root))
    finally:
        mlflow.set_tracking_uri(previous)
        if bar is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = bar
