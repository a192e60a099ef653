"""Refuse a bad config before any expensive work: schema (keys, types), fixed choices, and the constructor
signatures of the classes named by `_target_` (a typo'd model argument fails here, not after a Slurm queue wait)."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    InterpolationKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    UnsupportedInterpolationType,
    ValidationError,
)

from normia.config.agree import check_agreement
from normia.config.checkpoint_settings import checkpoint_settings
from normia.config.names import check_name
from normia.config.schema import CHOICES, TrainCfg
from normia.energy.settings import check_energy
from normia.errors import UserError, did_you_mean
from normia.models.hf.checks import check_hf_config

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
    check_resolvable(typed)
    check_name(typed.name)  # a folder name and a Slurm job name: ../../x or a line break refused
    _check_choices(typed)
    for group in ("model", "data"):
        node = typed.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise UserError(f"the '{group}' config has no _target_: pick one with {group}=<option>")
        check_target(node, group)
    for name, node in (typed.callbacks or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            check_target(node, f"callbacks.{name}")
    check_agreement(typed)
    check_energy(typed.get("energy"))  # here, so a bad value is refused before a Slurm submission too
    check_hang_limits(typed.trainer)
    checkpoint_settings(typed)  # the checkpoint node: keys, cadences, retention
    check_hf_config(typed)  # pretrained models (normia.models.hf): folder, weights, architecture, LoRA
    return typed


def check_hang_limits(trainer: DictConfig) -> None:
    """trainer.hang_timeout_s / hang_first_timeout_s: positive seconds (null turns the watchdog off)."""
    for key in ("hang_timeout_s", "hang_first_timeout_s"):
        value = trainer.get(key)
        if value is not None and float(value) <= 0:
            raise UserError(
                f"trainer.{key}={float(value):g} must be a positive number of seconds (trainer.hang_timeout_s=null turns "
                "the hang watchdog off)"
            )


def check_resolvable(cfg: DictConfig) -> None:
    """Every value must resolve now, not when the job reads it (after the MLflow run exists, or on a Slurm node):
    raises UserError naming the key whose value cannot be resolved or was left unset (???). Of a chain
    (`logger.experiment_name: ${name}` with a bad `name`), the key at its root is named."""
    problems = list(_unresolvable(cfg, ""))
    for key, raw, message in problems:
        if not any(f"${{{other}}}" in str(raw) for other, _, _ in problems if other != key):
            raise UserError(message)
    if problems:
        raise UserError(problems[0][2])


def _unresolvable(node: DictConfig | ListConfig, prefix: str) -> Iterator[tuple[str, Any, str]]:
    keys = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
    for key in keys:
        full = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        if full == "overrides":
            continue
        try:
            value = node[key]
        except OmegaConfBaseException as err:
            child = node._get_node(key)
            raw = child._value() if child is not None else None
            yield full, raw, _unresolvable_message(full, raw, err)
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            yield from _unresolvable(value, f"{full}.")


def _unresolvable_message(key: str, raw: Any, err: OmegaConfBaseException) -> str:
    if isinstance(err, MissingMandatoryValue) or raw == "???":
        return f"{key} has no value (??? in its config file): set it, e.g. {key}=..."
    text = str(err).splitlines()[0]
    missing = re.search(r"Interpolation key '([^']+)' not found", text)
    env = re.search(r"Environment variable '([^']+)' not found", text)
    if isinstance(err, InterpolationKeyError) and missing:
        why = f"there is no key '{missing.group(1)}'"
        fix = "point it at an existing key or give a value"
    elif env:
        why = f"the environment variable {env.group(1)} is not set"
        fix = f"set it, or give a default: ${{oc.env:{env.group(1)},<default>}}"
    elif "HydraConfig was not set" in text or (
        isinstance(err, UnsupportedInterpolationType) and "hydra" in text
    ):
        why = "${hydra:...} is not available in normia's configs"
        fix = "give a plain value (or ${oc.env:PWD} for the working folder)"
    elif isinstance(err, UnsupportedInterpolationType):
        why = text.replace("Unsupported interpolation type", "no resolver named")
        fix = "use ${key}, ${oc.env:VAR} or a plain value"
    elif isinstance(err, ValidationError):
        return f"{key}='{raw}' resolves to a value of the wrong type ({text}); give {key} a value of its type"
    else:
        why, fix = text, "fix the interpolation or give a plain value"
    return f"{key}='{raw}' cannot be resolved: {why}; {fix}"


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
    """The object a `_target_` names. Raises UserError (one line) when its module is missing, fails while being
    imported (naming the file and line that failed: a project's own code often does), or lacks the name."""
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):  # the module itself (or its package) does not exist
            raise UserError(
                f"{where}._target_='{target}': no module named '{err.name}'{_import_hint(err.name)}"
            ) from None
        raise UserError(_failed_import(target, where, err)) from None
    except Exception as err:  # a module's top level can raise anything: name it in one line
        raise UserError(_failed_import(target, where, err)) from None
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise UserError(f"{where}._target_: {module_name} has no '{attr}'{did_you_mean(attr, names)}")
    return getattr(module, attr)


def _import_hint(missing: str) -> str:
    from normia.project import current_project

    project = current_project()
    if project is not None and project.packages:
        return f"; check the class path (your project's packages: {', '.join(project.packages)})"
    return "; check the class path, or run from your project's folder (or pass --config-dir) so its code is found"


def _failed_import(target: str, where: str, err: BaseException) -> str:
    """`model._target_='p.models.Net': importing p.models failed at src/p/models.py:3: ModuleNotFoundError: ...`"""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if "importlib" not in f.filename and "<frozen" not in f.filename]
    if isinstance(err, SyntaxError) and err.filename:
        place = f"{err.filename}:{err.lineno}"
    elif own:
        place = f"{own[-1].filename}:{own[-1].lineno}"
    else:
        place = "?"
    text = " ".join(str(err).split()) or type(err).__name__
    module_name = target.rpartition(".")[0]
    return (
        f"{where}._target_='{target}': importing {module_name} failed at {place}: {type(err).__name__}: {text}; "
        "fix that file"
    )
