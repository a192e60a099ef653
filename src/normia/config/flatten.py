"""Nested config -> flat dotted keys, the shape MLflow params want."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values (MLflow params are strings)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{full}."))
        else:
            out[full] = value
    return out
