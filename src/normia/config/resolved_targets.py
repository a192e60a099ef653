"""The last check before a config node is built: each `_target_` at every depth, by the object it resolves to.

config/trust.py checks a target's text before anything is imported. Here, just before Hydra instantiates a node,
every target in it is checked again (the node may have been assembled since: a recorded config merged with today's
composition, a masked value filled in) and then resolved, importing only modules under normia or under the user's
prefix that allowed it (never a module outside them: a name outside every allowed one is refused by its text first):

- a normia name must be declared (config/buildable.py) and resolve to the class whose `__module__` + `__qualname__`
  is exactly that name;
- a name allowed by a user prefix (the project's packages, NORMIA_TRUSTED_TARGETS, the user's own trusted_targets)
  must resolve to a class or function defined in a module under that prefix, whose `__qualname__` ends the name:
  `my_study.models.os.system` (os.system, from module posix) and `my_study.models.json.loads` are refused;
- an exact third-party name (ALLOWED_TARGETS: torch/Lightning classes that read no file) is taken as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from normia.config.buildable import is_normia_name
from normia.config.trust import ALLOWED_TARGETS, check_targets, owner_prefix, targets, trusted_prefixes
from normia.errors import UserError

# Set by `--trust` for the run it starts in this process (normia reproduce --trust): nothing is checked then.
_TRUST_ALL: contextvars.ContextVar[bool] = contextvars.ContextVar("normia_trust_all_targets", default=False)


@contextlib.contextmanager
def trusting_all_targets(enabled: bool = True) -> Iterator[None]:
    """Within this block (this process, this thread), built nodes are not checked: `--trust` was given."""
    token = _TRUST_ALL.set(enabled)
    try:
        yield
    finally:
        _TRUST_ALL.reset(token)


def locate(target: str, where: str) -> Any:
    """The object a dotted name resolves to (modules imported as needed, attributes followed).

    Call only for a name already allowed by its text: the modules imported are then under normia or a user prefix.
    Raises UserError when a part is missing or a module fails to import."""
    parts = target.split(".")
    try:
        obj: Any = importlib.import_module(parts[0])
        for index in range(1, len(parts)):
            if hasattr(obj, parts[index]):
                obj = getattr(obj, parts[index])
            elif inspect.ismodule(obj):
                obj = importlib.import_module(".".join(parts[: index + 1]))
            else:
                raise AttributeError(parts[index])
    except UserError:
        raise
    except Exception as err:  # ImportError, AttributeError, or whatever a module's top level raises
        raise UserError(
            f"{where}='{target}' cannot be resolved ({type(err).__name__}: {err}); check the class path"
        ) from None
    return obj


def check_resolved(target: str, where: str, prefixes: Iterable[str]) -> None:
    """Refuse a target whose object is not the declared or vouched-for class or function it claims to be.

    Raises UserError naming the key, the name written and what it resolves to."""
    if target in ALLOWED_TARGETS:
        return
    owner = "normia." if is_normia_name(target) else owner_prefix(target, prefixes)
    if owner is None:  # refused by its text already (check_targets runs first); kept for direct callers
        raise UserError(f"{where}='{target}' names code outside the allowed targets; nothing was run")
    obj = locate(target, where)
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    buildable = inspect.isclass(obj) or inspect.isfunction(obj)
    if owner == "normia.":
        same = buildable and f"{module}.{qualname}" == target
    else:
        same = (
            buildable
            and isinstance(module, str)
            and isinstance(qualname, str)
            and (module + ".").startswith(owner)
            and target.endswith("." + qualname)
        )
    if not same:
        what = f"{module}.{qualname}" if module and qualname else type(obj).__name__
        raise UserError(
            f"{where}='{target}' resolves to {what}, not to a class or function defined under {owner}; nothing "
            f"was run. Name the class where it is defined (e.g. {owner}models.MyNet)"
        )


def check_node(node: Any, where: str, trust: bool = False) -> None:
    """Every `_target_` of a node about to be built, by text and then by object, against normia's declared
    classes and the user's prefixes (trusted_targets of the node's own root config, which a recorded config
    cannot set: config/trust.py empties it). trust=True, or a block under trusting_all_targets, skips the checks.

    Raises UserError for the first refused target."""
    if trust or _TRUST_ALL.get():
        return
    root = node._get_root() if hasattr(node, "_get_root") else node
    prefixes = trusted_prefixes(root)
    check_targets(node, where, prefixes)
    for path, target in targets(node):
        check_resolved(target, f"{where}.{path}", prefixes)
