"""Compose one job's config with Hydra, then validate it; every failure becomes a one-line UserError."""

from __future__ import annotations

import re

from hydra import compose
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from normia.config.hydra_layers import layered_hydra
from normia.config.origins import chosen_options, shadowing_note
from normia.config.overrides import parse_override, parse_overrides
from normia.config.paths import config_groups, config_sources, group_folders, group_options
from normia.config.trust import check_targets, trusted_prefixes
from normia.config.validate import validate
from normia.errors import UserError, did_you_mean
from normia.project import activate, current_project

# Dicts whose keys are the user's to choose: `tags.team=x` or `launcher.env.FOO=1` adds a key without a '+'.
FREE_FORM_DICTS = ("tags", "launcher.env", "launcher.sbatch_args", "launcher.partitions")


def compose_job(overrides: list[str]) -> DictConfig:
    """Compose configs/train.yaml with the overrides and validate the result against the schema and targets.

    Raises UserError (one line) for an override that does not parse, a key given twice, an unknown group, option
    or key, a wrong type, or a value that cannot be resolved."""
    parse_overrides(overrides)
    activate(current_project())  # the project's code importable here and in the processes this one starts
    try:
        cfg = _compose_raw(overrides)
        check_targets(cfg, "config", trusted_prefixes(cfg))  # before validation imports any target
        cfg = validate(cfg)
    except UserError as err:
        raise UserError(f"{err}{_shadowing(overrides, str(err))}") from None
    set_overrides(cfg, overrides)
    return cfg


def _shadowing(overrides: list[str], message: str) -> str:
    """A note naming the project file behind an error, when a project option shadows normia's of the same name."""
    if len(config_sources()) < 2:
        return ""
    choices = option_choices(overrides)
    return shadowing_note(choices, message) if choices else ""


def option_choices(overrides: list[str]) -> dict[str, str]:
    """group -> chosen option for these overrides ({} when they do not compose)."""
    try:
        with layered_hydra(config_sources()):
            full = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    except Exception:  # only a note for an error already raised; never a second error
        return {}
    return chosen_options(full)


def set_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Record the overrides as typed: escaped, so that resolving the config never interpolates their text
    (`cfg.overrides[i]` and `to_container(resolve=True)` give back exactly what the user wrote)."""
    cfg.overrides = [str(o).replace("${", "\\${") for o in overrides]


def recorded_overrides(cfg: DictConfig) -> list[str]:
    """The overrides as typed, whether they were stored by set_overrides (escaped) or assigned as plain text."""
    node = cfg.get("overrides") if "overrides" in cfg else None
    if node is None:
        return []
    raw = [node._get_node(i)._value() for i in range(len(node))]
    return [str(text).replace("\\${", "${") for text in raw]


def resolve_job(cfg: DictConfig) -> None:
    """Resolve every interpolation of cfg in place, except in the recorded overrides (kept as typed)."""
    texts = recorded_overrides(cfg)
    OmegaConf.resolve(cfg)
    set_overrides(cfg, texts)


def _compose_raw(overrides: list[str]) -> DictConfig:
    texts = list(overrides)
    for _ in range(len(texts) + 1):
        try:
            return _hydra_compose(texts)
        except ConfigCompositionException as err:
            added = _as_addition(texts, str(err))
            if added is None:
                raise UserError(_composition_message(str(err), texts)) from None
            texts = added
    raise UserError(f"cannot compose the overrides {' '.join(overrides)}")  # unreachable: one retry each


def _hydra_compose(overrides: list[str]) -> DictConfig:
    """Hydra's compose over the layers (config/hydra_layers.py): a project option wins a name clash with
    normia's, and normia's root train.yaml and its other options stay found."""
    try:
        with layered_hydra(config_sources()):
            return compose(config_name="train", overrides=overrides)
    except MissingConfigException as err:
        raise UserError(_missing_option_message(str(err), overrides)) from None
    except OverrideParseException as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(
            f"cannot parse the overrides: {first}; write them as key=value, e.g. optim.lr=3e-4"
        ) from None


def _as_addition(texts: list[str], message: str) -> list[str] | None:
    """Hydra refuses `launcher.sbatch_args={hold: true}` (a dict merged into an existing dict) and `tags.team=x`
    (a new key in a free-form dict) without a '+'. Both are clear: retry them as '++' (add or merge)."""
    match = re.search(r"Could not override '([^']+)'", message)
    if not match:
        return None
    key = match.group(1)
    index = next(
        (i for i, t in enumerate(texts) if not t.startswith(("+", "~")) and t.partition("=")[0] == key), None
    )
    if index is None:
        return None
    parent = key.rpartition(".")[0]
    dict_value = isinstance(parse_override(texts[index]).value(), dict)
    try:
        base = _hydra_compose(texts[:index] + texts[index + 1 :])
    except (UserError, ConfigCompositionException):
        return None
    target = OmegaConf.select(base, key) if dict_value else OmegaConf.select(base, parent)
    free_form = dict_value or parent in FREE_FORM_DICTS
    if not free_form or not isinstance(target, DictConfig):
        return None
    return [*texts[:index], "++" + texts[index], *texts[index + 1 :]]


def _missing_option_message(text: str, overrides: list[str]) -> str:
    match = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if not match:
        return text.strip().splitlines()[0]
    group, option = match.group(1), match.group(2)
    options = group_options(group)
    folders = " ".join(str(f) for f in group_folders(group))
    return f"unknown {group} '{option}'{did_you_mean(option, options)}; list them with: ls {folders}"


def node_at(overrides: list[str], key: str, path: str) -> object:
    """The node at `path` in the config composed without the override of `key` (None when absent)."""
    rest = [o for o in overrides if not o.lstrip("+~").startswith(key + "=")]
    try:
        return OmegaConf.select(_hydra_compose(rest), path) if path else _hydra_compose(rest)
    except (UserError, ConfigCompositionException):
        return None


def _missing_parent_message(overrides: list[str], key: str) -> str:
    """`launcher.env.X=1` under launcher=local: name the deepest part of the key that exists, not the leaf."""
    parts = key.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        ancestor = ".".join(parts[: depth - 1])
        node = node_at(overrides, key, ancestor)
        if isinstance(node, DictConfig):
            missing = parts[depth - 1]
            where = f"'{ancestor}'" if ancestor else "the config"
            hint = did_you_mean(missing, [str(k) for k in node])
            return f"unknown key '{key}': {where} has no '{missing}'{hint}"
    return f"unknown key '{key}'"


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
        base = _hydra_compose(rest)
        node = OmegaConf.select(base, parent) if parent else base
        keys = list(node.keys()) if isinstance(node, DictConfig) else []
    except (UserError, ConfigCompositionException):
        keys = []
    if parent and not isinstance(node_at(overrides, key, parent), DictConfig):
        return _missing_parent_message(overrides, key)
    if leaf in map(str, keys):
        given = next((o for o in overrides if o.lstrip("+~").startswith(key + "=")), key)
        return f"'{given}' cannot be merged into {key}; write '++{given.lstrip('+')}' to add or replace it"
    if not parent:
        return f"unknown config group or key '{key}'{did_you_mean(leaf, [*map(str, keys), *config_groups()])}"
    where = f"'{parent}'"
    return f"unknown key '{key}': {where} has no '{leaf}'{did_you_mean(leaf, [str(k) for k in keys])}"
