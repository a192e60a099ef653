"""A sqlite MLflow store copied elsewhere with its mlruns/ folder beside it (issue 25 C: handing a run over without a
shared server). The store records each run's artifact folder as an absolute path of the machine that made it
(file:///home/alice/study/mlruns/1/<run>/artifacts); on the colleague's machine that path does not exist, but the same
folder does exist beside the copied mlflow.db. This finds it there.

Import-light: no MLflow import.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

SQLITE = "sqlite:///"


def local_artifact_path(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts on this machine's filesystem, or None for a remote store (http, s3, ...)."""
    if artifact_uri.startswith("file:"):
        return Path(unquote(urlparse(artifact_uri).path))
    if artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


def store_folder(tracking_uri: str) -> Path | None:
    """The folder holding a sqlite store's database file, None for any other store."""
    if not tracking_uri.startswith(SQLITE):
        return None
    return Path(tracking_uri[len(SQLITE) :]).resolve().parent


def beside_the_store(recorded: Path, tracking_uri: str) -> Path | None:
    """Where `recorded` (a run's artifact folder, .../mlruns/<experiment>/<run>/artifacts) is in the mlruns/ folder
    beside this sqlite store: None when the store is not sqlite, the path has no mlruns/ part, or nothing is there."""
    folder = store_folder(tracking_uri)
    parts = recorded.parts
    if folder is None or "mlruns" not in parts:
        return None
    last = len(parts) - 1 - parts[::-1].index("mlruns")
    candidate = folder.joinpath("mlruns", *parts[last + 1 :])
    return candidate if candidate.is_dir() else None


def artifacts_here(artifact_uri: str, tracking_uri: str) -> tuple[Path | None, bool]:
    """(the local folder of a run's artifacts, whether it was found beside a copied store rather than where the
    store recorded it). (None, False) for remote artifacts, and for local ones found nowhere."""
    recorded = local_artifact_path(artifact_uri)
    if recorded is None:
        return None, False
    if recorded.is_dir():
        return recorded, False
    moved = beside_the_store(recorded, tracking_uri)
    return (moved, True) if moved is not None else (None, False)


def experiment_here(client: object, experiment_name: str, tracking_uri: str) -> str:
    """The experiment a re-run in a copied store logs to: '<name>-copy', its artifacts in the mlruns/ folder beside
    the store (created on first use: call this just before the run). The copied experiment itself keeps the other
    machine's artifact path, which MLflow cannot change, so a run logged into it would write its files there."""
    name = f"{experiment_name}-copy"
    folder = store_folder(tracking_uri)
    if client.get_experiment_by_name(name) is None and folder is not None:  # type: ignore[attr-defined]
        location = folder / "mlruns" / name
        client.create_experiment(name, artifact_location=location.as_uri())  # type: ignore[attr-defined]
    return name
