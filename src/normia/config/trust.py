"""What a config may make this process do: which code its `_target_`s name, and which resolvers it may call.

Why: Hydra's `instantiate` imports and calls whatever a `_target_` names, at any depth. A config that came from
elsewhere (an MLflow store, a shared run folder) is data written by someone else; if it could name
`pandas.read_pickle` or `os.system`, reproducing or evaluating a colleague's run would run their code as you. So,
before anything is imported or instantiated, every `_target_` must resolve to an allowed name:

- normia's own buildable classes, each named exactly (config/buildable.py): never the `normia.` prefix, which
  reaches any module through attribute access (`normia.training.checkpoint.torch.load` is torch.load),
- an explicit list of torch / Lightning / torchvision classes that load nothing from disk (ALLOWED_TARGETS),
- the packages of the project normia runs in (normia/project: found from the current folder, --config-dir or
  NORMIA_CONFIG_PATH) - the researcher's own code, as `python train.py` in that folder would run it,
- prefixes the user adds in their OWN config (`trusted_targets`) or in the NORMIA_TRUSTED_TARGETS environment
  variable (comma-separated) - never from a recorded config, whose own `trusted_targets` key is ignored.

A name is checked twice: here, by its text, before anything is imported; and when it is built
(config/resolved_targets.py), by the object it resolves to, which must be that class itself.

`--trust` on reproduce/eval is the only way past the check, and it says so. Likewise a recorded config may not call
resolvers (`${oc.env:AWS_SECRET_ACCESS_KEY}`, `${oc.decode:...}`, custom ones): they would read the machine of whoever
reproduces it. Plain interpolations between keys (`${model.dim}`) are data and stay allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

from normia.config.buildable import BUILDABLE, is_declared, is_normia_name
from normia.errors import UserError, did_you_mean

TRUSTED_TARGETS_ENV = "NORMIA_TRUSTED_TARGETS"
NORMIA_PREFIX = "normia."
# Classes a normia config may name besides normia's own: callbacks and optimisers that take plain values and read no
# file. A loader (torch.load, pandas.read_pickle, joblib.load, numpy.load) is never on this list.
ALLOWED_TARGETS = frozenset(
    {
        "lightning.pytorch.callbacks.LearningRateMonitor",
        "lightning.pytorch.callbacks.RichProgressBar",
        "lightning.pytorch.callbacks.TQDMProgressBar",
        "lightning.pytorch.callbacks.EarlyStopping",
        "lightning.pytorch.callbacks.ModelSummary",
        "lightning.pytorch.callbacks.RichModelSummary",
        "lightning.pytorch.callbacks.GradientAccumulationScheduler",
        "lightning.pytorch.callbacks.StochasticWeightAveraging",
        "lightning.pytorch.callbacks.DeviceStatsMonitor",
        "lightning.pytorch.callbacks.Timer",
        "torch.nn.Identity",
        "torch.nn.ReLU",
        "torch.nn.GELU",
        "torch.nn.SiLU",
        "torch.nn.Tanh",
        "torch.nn.Dropout",
        "torch.nn.LayerNorm",
        "torch.nn.BatchNorm1d",
        "torch.nn.BatchNorm2d",
        "torch.nn.Linear",
        "torch.nn.Conv2d",
        "torch.optim.AdamW",
        "torch.optim.Adam",
        "torch.optim.SGD",
        "torchvision.transforms.ToTensor",
        "torchvision.transforms.Normalize",
        "torchvision.transforms.Resize",
        "torchvision.transforms.CenterCrop",
        "torchvision.transforms.RandomHorizontalFlip",
    }
)
# `${name:...}`: a resolver call. `${a.b}` (an interpolation between keys) has no colon before the closing brace.
RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


def targets(cfg: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (key path, target text) of `cfg`, at any depth, without resolving anything.

    A `_target_` given as an interpolation is yielded as its raw text (e.g. '${oc.env:X}'), so it is refused.
    """
    if isinstance(cfg, DictConfig):
        for key in cfg:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_":
                yield path, _raw(cfg, key)
            else:
                yield from targets(cfg._get_node(key), path)
    elif isinstance(cfg, ListConfig):
        for index in range(len(cfg)):
            yield from targets(cfg._get_node(index), f"{prefix}[{index}]")


def _raw(node: DictConfig, key: Any) -> str:
    value = node._get_node(key)
    return str(value._value()) if value is not None else ""


def trusted_prefixes(own_config: Any = None) -> tuple[str, ...]:
    """Allowed target prefixes besides ALLOWED_TARGETS: normia, the current project's packages,
    NORMIA_TRUSTED_TARGETS, and `trusted_targets` of the user's own (composed, not recorded) config."""
    from normia.project import current_project

    project = current_project()
    extra = list(project.trusted_prefixes) if project else []
    extra += [p.strip() for p in os.environ.get(TRUSTED_TARGETS_ENV, "").split(",") if p.strip()]
    if isinstance(own_config, DictConfig) and own_config.get("trusted_targets"):
        extra += [str(p) for p in own_config.trusted_targets]
    return (NORMIA_PREFIX, *extra)


def user_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The prefixes that vouch for code outside normia: a prefix inside normia's namespace ('normia.', 'normia.x.')
    is dropped, since only config/buildable.py decides which normia names a config may use."""
    return tuple(p for p in prefixes if p and not is_normia_name(p.rstrip(".")))


def owner_prefix(target: str, prefixes: Iterable[str]) -> str | None:
    """The user prefix that allows `target`, as a package boundary ('pkg.'; an exact name 'pkg.Cls' gives 'pkg.'),
    or None when no user prefix allows it."""
    for prefix in user_prefixes(prefixes):
        if prefix.endswith(".") and target.startswith(prefix):
            return prefix
        if target == prefix and "." in prefix:
            return prefix.rpartition(".")[0] + "."
    return None


def is_allowed(target: str, prefixes: Iterable[str]) -> bool:
    """Exact names in ALLOWED_TARGETS; a normia name only when declared buildable (config/buildable.py); other
    names under a user prefix ('pkg.' allows pkg.*; 'pkg.Cls' allows exactly it)."""
    if target in ALLOWED_TARGETS:
        return True
    if is_normia_name(target):
        return is_declared(target)
    return owner_prefix(target, prefixes) is not None


def check_targets(
    cfg: Any, origin: str, prefixes: Iterable[str] | None = None, recorded: bool = False
) -> None:
    """Refuse the first `_target_` outside the allowed names, before anything is imported.

    recorded: the config came from a store or a run folder (its own `trusted_targets` is not read; --trust exists).
    Raises UserError naming the key, the target and the ways to allow it.
    """
    allowed = tuple(prefixes) if prefixes is not None else trusted_prefixes()
    for path, target in targets(cfg):
        if is_normia_name(target) and not is_declared(target):
            raise UserError(_undeclared_message(origin, path, target))
        if not is_allowed(target, allowed):
            package = target.split(".")[0] + "."
            way = "pass --trust, or add " if recorded else "add "
            raise UserError(
                f"{origin}: {path}='{target}' names code outside the allowed targets (normia's own and a list of "
                f"torch/Lightning classes); nothing was run. If you trust that code, {way}trusted_targets="
                f"'[{package}]' to your own config or {package} to {TRUSTED_TARGETS_ENV}"
            )


def _undeclared_message(origin: str, path: str, target: str) -> str:
    """Why a normia name is refused, with the declared class it most resembles."""
    module, _, attr = target.rpartition(".")
    siblings = [name.rpartition(".")[2] for name in BUILDABLE if name.rpartition(".")[0] == module]
    if siblings:
        close = f"{module} has no '{attr}'{did_you_mean(attr, siblings)}"
    else:
        hint = did_you_mean(target, BUILDABLE)
        close = (
            f"name one of them{hint}" if hint else "name a class there, e.g. normia.models.mlp.MLPClassifier"
        )
    return (
        f"{origin}: {path}='{target}' is not one of normia's buildable classes (its models, data modules and "
        f"callbacks, listed in normia/config/buildable.py): {close}; nothing was run"
    )


def resolver_calls(cfg: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (key path, resolver name) where a value calls a resolver (${oc.env:...}, ${oc.decode:...}, custom)."""
    if isinstance(cfg, DictConfig):
        items: Iterable[tuple[str, Any]] = ((str(k), cfg._get_node(k)) for k in cfg)
    elif isinstance(cfg, ListConfig):
        items = ((f"[{i}]", cfg._get_node(i)) for i in range(len(cfg)))
    else:
        return
    for key, node in items:
        path = key if not prefix else (f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}")
        if isinstance(node, (DictConfig, ListConfig)):
            yield from resolver_calls(node, path)
            continue
        raw = node._value() if node is not None else None
        if isinstance(raw, str):
            for match in RESOLVER_CALL.finditer(raw):
                yield path, match.group(1)


def check_no_resolvers(cfg: Any, origin: str) -> None:
    """Refuse a recorded config that calls a resolver: it would read this machine (environment, files) on reproduce.

    Raises UserError naming the key and the resolver.
    """
    for path, name in resolver_calls(cfg):
        raise UserError(
            f"{origin}: {path} calls the resolver '${{{name}:...}}', which would read this machine's environment "
            "when reproduced; a recorded config must hold plain values. Nothing was run; pass --trust only if you "
            "trust whoever wrote it"
        )


def load_untrusted_yaml(
    text: str, origin: str, trust: bool = False, prefixes: Iterable[str] | None = None
) -> Any:
    """Parse a config written elsewhere and check it before anything uses it: size and YAML aliases (always, even
    with trust: config/record_yaml.py), then targets and resolvers. Its own `trusted_targets` is emptied: a
    recorded config cannot vouch for code.

    With trust=True the target and resolver checks are skipped and a line says so on stderr. Raises UserError on a
    refused config."""
    import sys

    from normia.config.record_yaml import load_recorded_yaml

    cfg = load_recorded_yaml(text, origin)
    if trust:
        print(
            f"warning: --trust: {origin} may name any code and call resolvers; it is not checked",
            file=sys.stderr,
        )
        return cfg
    check_no_resolvers(cfg, origin)
    check_targets(cfg, origin, prefixes, recorded=True)
    if isinstance(cfg, DictConfig) and "trusted_targets" in cfg:
        cfg.trusted_targets = []
    return cfg


def _refused_override(text: str) -> str | None:
    """Why a recorded override may not be applied, or None. `hydra.*` (and `hydra/...` groups) choose what is
    composed (hydra.searchpath=[file:///shared/...] loads configs from anywhere); `trusted_targets` vouches for code.
    Only the person who runs the command may do either."""
    from normia.config.overrides import parse_override

    parsed = parse_override(text)
    key = str(parsed.key_or_group or "")
    package = str(parsed.package or "")
    for name in (key, package):
        root = re.split(r"[./\[@]", name.lstrip("+~").removeprefix("_global_."), maxsplit=1)[0]
        if root == "hydra":
            return "sets Hydra's own settings, which choose the configs composed (hydra.searchpath, ...)"
        if root == "trusted_targets":
            return "sets trusted_targets, which vouches for code"
    return None


def untrusted_overrides(texts: list[str], origin: str, trust: bool = False) -> list[str]:
    """Recorded command-line overrides, checked before they are composed. Refused (UserError): one that calls a
    resolver, one under `hydra` (hydra.searchpath, hydra/... groups: they choose what is composed) and one under
    `trusted_targets` (a recorded run cannot vouch for code; the caller's own NORMIA_TRUSTED_TARGETS or --trust
    can). With trust=True they are returned unchanged."""
    if trust:
        return list(texts)
    kept = []
    for text in texts:
        key = text.partition("=")[0].lstrip("+~")
        match = RESOLVER_CALL.search(text.partition("=")[2])
        if match:
            raise UserError(
                f"{origin}: the override {key}=... calls the resolver '${{{match.group(1)}:...}}', which would read "
                "this machine's environment when reproduced; nothing was run. Pass --trust only if you trust "
                "whoever wrote it"
            )
        why = _refused_override(text)
        if why:
            raise UserError(
                f"{origin}: the recorded override '{key}=...' {why}; a recorded run may not do that, so nothing was "
                "run. Pass --trust only if you trust whoever can write to this store"
            )
        kept.append(text)
    return kept
