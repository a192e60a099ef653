"""Compose one job's config with Hydra, then validate it; every failure becomes a one-line UserError."""

from __future__ import annotations

import re

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from normia.config.paths import config_groups, configs_dir, group_options
from normia.config.validate import validate
from normia.errors import UserError, did_you_mean


def compose_job(overrides: list[str]) -> DictConfig:
    """Compose configs/train.yaml with the overrides and validate the result against the schema and targets."""
    cfg = _compose_raw(overrides)
    cfg = validate(cfg)
    cfg.overrides = list(overrides)
    return cfg


def _compose_raw(overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(config_dir=str(configs_dir()), version_base="1.3", job_name="normia"):
            return compose(config_name="train", overrides=overrides)
    except MissingConfigException as err:
        raise UserError(_missing_option_message(str(err), overrides)) from None
    except OverrideParseException as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(
            f"cannot parse the overrides: {first}; write them as key=value, e.g. optim.lr=3e-4"
        ) from None
    except ConfigCompositionException as err:
        raise UserError(_composition_message(str(err), overrides)) from None


def _missing_option_message(text: str, overrides: list[str]) -> str:
    match = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if not match:
        return text.strip().splitlines()[0]
    group, option = match.group(1), match.group(2)
    options = group_options(group)
    return f"unknown {group} '{option}'{did_you_mean(option, options)}; list them with: ls {configs_dir() / group}"


def _composition_message(text: str, overrides: list[str]) -> str:
    match = re.search(r"Could not override '([^']+)'", text)
    if not match:
        return " ".join(text.split())
    key = match.group(1)
    if "No match in the defaults list" in text:
        return f"unknown config group '{key}'{did_you_mean(key, config_groups())}"
    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if not o.lstrip("+~").startswith(key + "=")]
    try:
        base = _compose_raw(rest)
        node = OmegaConf.select(base, parent) if parent else base
        keys = list(node.keys()) if isinstance(node, DictConfig) else []
    except UserError:
        keys = []
    if not parent:
        return f"unknown config group or key '{key}'{did_you_mean(leaf, [*map(str, keys), *config_groups()])}"
    where = f"'{parent}'"
    return f"unknown key '{key}': {where} has no '{leaf}'{did_you_mean(leaf, [str(k) for k in keys])}"
