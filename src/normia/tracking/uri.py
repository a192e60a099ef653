"""Which MLflow store a run goes to, and whether it can be reached, checked before any work starts."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from normia.config.masking import mask_uri
from normia.errors import UserError

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(configured: str | None) -> str:
    """Config value, else $MLFLOW_TRACKING_URI, else MLflow's embedded default (sqlite:///mlflow.db in the cwd)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    return absolute_sqlite(uri)


def absolute_sqlite(uri: str) -> str:
    """sqlite:///mlflow.db -> sqlite:////abs/cwd/mlflow.db: the same file for every rank, node and later resume,
    whatever their working directory (and MLflow caches stores by URI string within a process)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + os.path.abspath(uri[len(prefix) :])
    return uri


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """An http(s) server must answer /health; a sqlite file's folder must exist. Raises UserError otherwise."""
    if uri.startswith(("http://", "https://")):
        url = mask_uri(uri).replace("***@", "").rstrip("/") + "/health"  # /health needs no credentials
        shown = mask_uri(uri)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(
                f"MLflow server {shown} is unreachable ({reason}); start it (mlflow server --port ...) or drop "
                "logger.tracking_uri to use the local sqlite:///mlflow.db"
            ) from None
        raise UserError(f"MLflow server {shown} answered /health with an error; check the server's log")
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        folder = os.path.dirname(os.path.abspath(path)) or "."
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UserError(f"cannot write the MLflow store {uri}: {folder} is missing or read-only")
