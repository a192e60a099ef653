"""Values under secret-looking keys never reach MLflow, saved configs or the terminal: they show as ***."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

SECRET_KEY = re.compile(
    r"(^|[_\-.])(password|passwd|pwd|token|secret|secrets|credential|credentials|api_?key|access_?key|private_?key)"
    r"($|[_\-.])",
    re.IGNORECASE,
)
MASK = "***"


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(str(key)))


def redact(cfg: DictConfig) -> DictConfig:
    """A resolved copy of cfg with every secret value replaced by ***."""
    container = _redact_obj(OmegaConf.to_container(cfg, resolve=True))
    if isinstance(container.get("overrides"), list):
        container["overrides"] = [redact_override(str(o)) for o in container["overrides"]]
    return OmegaConf.create(container)


def _redact_obj(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and v is not None else _redact_obj(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, ListConfig)):
        return [_redact_obj(v) for v in obj]
    return obj


def redact_override(override: str) -> str:
    """'logger.api_key=abc' -> 'logger.api_key=***'."""
    key, sep, _ = override.partition("=")
    return f"{key}={MASK}" if sep and is_secret_key(key.split(".")[-1]) else override
