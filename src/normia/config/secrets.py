"""Values under secret-looking keys never reach MLflow, saved configs or the terminal: they show as ***.

Everything here is normia.config.masking's one masking function (mask); these names stay for their callers:
redact(cfg) for a config, redact_override(text) for an override or any printed text, redact_overrides(cfg) for the
overrides a run records (as typed, their ${...} never resolved, masked with the secrets of cfg and the environment).
"""

from __future__ import annotations

from omegaconf import DictConfig

from normia.config.masking import MASK, is_secret_key, mask, mask_text, secret_values

__all__ = ["MASK", "is_secret_key", "redact", "redact_override", "redact_overrides"]


def redact(cfg: DictConfig) -> DictConfig:
    """A resolved copy of cfg with every secret value replaced by *** (names, known values, URI userinfo, token
    shapes). Its `overrides` are the recorded ones as typed: a rank's config, read back from resolved YAML, holds
    `${oc.env:NAME}` there as a live interpolation, which resolving would turn into the variable's value."""
    if isinstance(cfg, DictConfig) and "overrides" in cfg:
        from normia.config.compose import recorded_overrides, set_overrides

        typed = cfg.copy()
        set_overrides(typed, recorded_overrides(cfg))  # escaped: resolving gives back the text as typed
        return mask(typed)
    return mask(cfg)


def redact_override(override: str) -> str:
    """'logger.api_key=abc' -> 'logger.api_key=***'; '+tags={hub_token: X}' -> '+tags={hub_token: ***}'."""
    return mask_text(override)


def redact_overrides(cfg: DictConfig) -> list[str]:
    """cfg's recorded overrides as typed (an `${oc.env:NAME}` stays a reference, never its value), each masked:
    secret names, URIs, token shapes, and the values of cfg's secret keys and of secret environment variables
    wherever they appear (`+tags.note=X` where X is also `logger.api_key`'s value)."""
    from normia.config.compose import recorded_overrides

    known = secret_values(cfg)
    return [mask_text(o, known) for o in recorded_overrides(cfg)]
