"""The search space: configs/search/<name>.yaml, read, checked and turned into Optuna suggestions and overrides.

A space file::

    params:                       # config key -> distribution
      optim.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}    # or type: log-float
      model.dropout: {type: float, low: 0.0, high: 0.3}
      trainer.max_epochs: {type: int, low: 2, high: 6}
      data.batch_size: {type: categorical, choices: [32, 64, 128]}
    overrides: [trainer.max_epochs=3]   # optional: applied to every trial, before the command line's
    pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}    # optional: median | asha | none
    sampler: {name: tpe}                # optional: tpe | random

Categorical choices are numbers, booleans or text; text is handed to Hydra as typed, so `"[64,64]"` is a list.
Every problem is a one-line UserError naming the file, the key and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normia.errors import UserError, did_you_mean

KINDS = ("float", "log-float", "int", "log-int", "categorical")
NUMERIC_KEYS = {"type", "low", "high", "log", "step"}
CATEGORICAL_KEYS = {"type", "choices"}
FILE_KEYS = ("params", "overrides", "pruner", "sampler")


@dataclass(frozen=True)
class Param:
    """One searched key: kind 'float' | 'int' | 'categorical'; low/high inclusive; log: sampled on a log scale."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form, stored in the study (resume compares it)."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        """'log-float 0.0001..0.03', 'int 2..6', 'categorical [32, 64]'."""
        if self.kind == "categorical":
            return f"categorical [{', '.join(map(str, self.choices))}]"
        step = f" step {self.step}" if self.step is not None else ""
        return f"{'log-' if self.log else ''}{self.kind} {self.low}..{self.high}{step}"

    def suggest(self, trial: Any) -> Any:
        """The value for this key drawn through an optuna.Trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass
class SearchSpace:
    """The parsed space file: searched params, overrides for every trial, pruner and sampler settings."""

    name: str
    path: Path
    params: list[Param]
    overrides: list[str] = field(default_factory=list)
    pruner: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {p.key: p.as_dict() for p in self.params}


def override_text(value: Any) -> str:
    """A sampled value as Hydra override text: true/false, null, numbers as Python writes them, text as typed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def find_space_file(name: str) -> Path:
    """configs/search/<name>.yaml in the project's config folders, else normia's. UserError naming the options."""
    from normia.config.paths import group_folders, group_options, option_sources

    if not name or "/" in name or name.startswith("."):
        raise UserError(
            f"search={name!r}: give the name of a file in configs/search/, e.g. search=quickstart"
        )
    sources = option_sources("search", name)
    if not sources:
        folders = " ".join(str(f) for f in group_folders("search"))
        raise UserError(
            f"unknown search '{name}'{did_you_mean(name, group_options('search'))}; list them with: ls {folders}"
        )
    return sources[0].folder / "search" / f"{name}.yaml"


def load_space(name: str) -> SearchSpace:
    """Read and check a space file (types, bounds, choices); the keys are checked against the config later."""
    import yaml

    path = find_space_file(name)
    where = f"search {name} ({path})"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{where}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping with 'params:'")
    for key in raw:
        if key not in FILE_KEYS:
            raise UserError(f"{where}: unknown entry '{key}'{did_you_mean(str(key), FILE_KEYS)}")
    params_node = raw.get("params")
    if not isinstance(params_node, dict) or not params_node:
        raise UserError(f"{where}: 'params:' must map at least one config key to a distribution")
    params = [parse_param(str(key), spec, where) for key, spec in params_node.items()]
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{where}: 'overrides:' must be a list of key=value texts")
    pruner, sampler = raw.get("pruner") or {}, raw.get("sampler") or {}
    pruner = {"name": pruner} if isinstance(pruner, str) else pruner
    sampler = {"name": sampler} if isinstance(sampler, str) else sampler
    if not isinstance(pruner, dict) or not isinstance(sampler, dict):
        raise UserError(f"{where}: 'pruner:' and 'sampler:' are a name or a mapping with 'name:'")
    return SearchSpace(name, path, params, list(overrides), dict(pruner), dict(sampler))


def parse_param(key: str, spec: Any, where: str) -> Param:
    """One entry of params: -> Param. UserError for an unknown type, low >= high, log with low <= 0, an empty or
    repeated categorical, or a misspelt entry."""
    label = f"{where}: {key}"
    if not isinstance(spec, dict):
        raise UserError(f"{label}: give a mapping like {{type: float, low: 0.0, high: 1.0}}")
    kind = str(spec.get("type", ""))
    if kind not in KINDS:
        raise UserError(f"{label}: unknown type '{kind}'{did_you_mean(kind, KINDS)}")
    allowed = CATEGORICAL_KEYS if kind == "categorical" else NUMERIC_KEYS
    for entry in spec:
        if entry not in allowed:
            raise UserError(
                f"{label}: '{entry}' does not apply to type {kind}{did_you_mean(str(entry), allowed)}"
            )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{label}: categorical needs a non-empty list, e.g. choices: [32, 64]")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise UserError(
                    f"{label}: choice {choice!r} must be a number, true/false or text (write a list as '[64,64]')"
                )
        if len({repr(c) for c in choices}) != len(choices):
            raise UserError(f"{label}: a choice is listed twice in {choices}")
        return Param(key, "categorical", choices=tuple(choices))
    log = bool(spec.get("log", False)) or kind.startswith("log-")
    base = kind.removeprefix("log-")
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{label}: {name} must be a finite number, got {value!r}")
        if base == "int" and not float(value).is_integer():
            raise UserError(f"{label}: {name}={value} must be a whole number for type int")
    if low >= high:
        raise UserError(f"{label}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise UserError(f"{label}: a log scale needs low > 0, got {low}; raise low or drop log")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise UserError(f"{label}: step must be a positive number, got {step!r}")
        if log:
            raise UserError(f"{label}: step and log cannot be combined (Optuna refuses it); drop one")
    if base == "int":
        return Param(key, "int", int(low), int(high), log, int(step) if step is not None else None)
    return Param(key, "float", float(low), float(high), log, float(step) if step is not None else None)


def check_keys(space: SearchSpace, cfg: Any, user_overrides: list[str]) -> None:
    """Every searched key must exist in the composed config (did-you-mean from its siblings) and must not also be
    set on the command line. Raises UserError naming the key."""
    from omegaconf import DictConfig

    typed = {o.lstrip("+~").partition("=")[0] for o in user_overrides}
    for param in space.params:
        if param.key in typed:
            raise UserError(
                f"search {space.name}: {param.key} is searched and also set on the command line; drop one of them"
            )
        node: Any = cfg
        parts = param.key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig) or part not in node:
                parent = ".".join(parts[:depth])
                where = f"'{parent}'" if parent else "the config"
                siblings = [str(k) for k in node] if isinstance(node, DictConfig) else []
                raise UserError(
                    f"search {space.name}: unknown key '{param.key}': {where} has no '{part}'"
                    f"{did_you_mean(part, siblings)}"
                )
            node = node._get_node(part)


def space_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between the stored space and this one: 'optim.lr: log-float 0.0001..0.1 -> ...', 'added k'."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            changes.append(f"removed {key}")
        elif key not in old:
            changes.append(f"added {key}")
        elif old[key] != new[key]:
            before = parse_param(key, old[key], "").describe()
            after = parse_param(key, new[key], "").describe()
            changes.append(
                f"{key}: {before} -> {after}" if before != after else f"{key}: {old[key]} -> {new[key]}"
            )
    return changes
