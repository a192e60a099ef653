"""Values under secret-looking keys never reach MLflow, saved configs or the terminal: they show as ***.

Everything here is normia.config.masking's one masking function (mask); these names stay for their callers:
redact(cfg) for a config, redact_override(text) for an override or any printed text.
"""

from __future__ import annotations

from omegaconf import DictConfig

from normia.config.masking import MASK, is_secret_key, mask, mask_text

__all__ = ["MASK", "is_secret_key", "redact", "redact_override"]


def redact(cfg: DictConfig) -> DictConfig:
    """A resolved copy of cfg with every secret value replaced by *** (names, known values, URI userinfo)."""
    return mask(cfg)


def redact_override(override: str) -> str:
    """'logger.api_key=abc' -> 'logger.api_key=***'; '+tags={hub_token: X}' -> '+tags={hub_token: ***}'."""
    return mask_text(override)
