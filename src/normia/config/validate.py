"""Refuse a bad config before any expensive work: schema (keys, types), fixed choices, and the constructor
signatures of the classes named by `_target_` (a typo'd model argument fails here, not after a Slurm queue wait)."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from normia.config.schema import CHOICES, TrainCfg
from normia.errors import UserError, did_you_mean

TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def validate(cfg: DictConfig) -> DictConfig:
    """Merge cfg into the schema, check choices and targets; return the typed config."""
    schema = OmegaConf.structured(TrainCfg)
    try:
        typed = OmegaConf.merge(schema, cfg)
    except ConfigKeyError as err:
        raise UserError(_unknown_key_message(err, schema)) from None
    except ValidationError as err:
        raise UserError(_type_message(err)) from None
    except OmegaConfBaseException as err:
        raise UserError(str(err).splitlines()[0]) from None
    _check_choices(typed)
    for group in ("model", "data"):
        node = typed.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise UserError(f"the '{group}' config has no _target_: pick one with {group}=<option>")
        check_target(node, group)
    for name, node in (typed.callbacks or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            check_target(node, f"callbacks.{name}")
    return typed


def _unknown_key_message(err: ConfigKeyError, schema: DictConfig) -> str:
    full_key = getattr(err, "full_key", None) or ""
    parent, _, leaf = str(full_key).rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    keys = [str(k) for k in node] if isinstance(node, DictConfig) else []
    return f"unknown key '{full_key}'{did_you_mean(leaf, keys)}"


def _type_message(err: ValidationError) -> str:
    full_key = getattr(err, "full_key", "") or ""
    text = str(err).splitlines()[0]
    match = re.search(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", text)
    if match:
        wanted = TYPE_WORDS.get(match.group(2), match.group(2))
        return f"{full_key}='{match.group(1)}' is not {wanted}; give {full_key} {wanted}"
    if "is not Optional" in text:
        return f"{full_key} cannot be null; give it a value"
    return f"{full_key}: {text}"


def _check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES:
        value = OmegaConf.select(cfg, key)
        if value is not None and str(value) not in allowed:
            raise UserError(f"{key}='{value}' is not valid{did_you_mean(str(value), allowed)}")


def check_target(node: DictConfig, where: str) -> None:
    """The `_target_` must import, and every key must be a parameter of its constructor."""
    target = str(node["_target_"])
    obj = import_target(target, where)
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in node:
        key = str(key)
        if key.startswith("_") and key.endswith("_"):
            continue
        if key not in accepted:
            raise UserError(
                f"{where}: {target.rsplit('.', 1)[-1]} has no argument '{key}'{did_you_mean(key, accepted)}"
            )
    missing = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and n not in node
    ]
    if missing:
        raise UserError(
            f"{where}: {target.rsplit('.', 1)[-1]} needs {', '.join(missing)}; set {where}.{missing[0]}=..."
        )


def import_target(target: str, where: str) -> Any:
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(
            f"{where}._target_='{target}' cannot be imported ({err}); check the class path"
        ) from None
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise UserError(f"{where}._target_: {module_name} has no '{attr}'{did_you_mean(attr, names)}")
    return getattr(module, attr)
