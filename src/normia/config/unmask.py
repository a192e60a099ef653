"""Secrets masked as *** in a recorded config, filled from today's composition when a run is reproduced.

Why so narrow: the recorded config is written by whoever can write to the store, and today's composition is built
from overrides they recorded. A `***` at any key, filled with any value, let a record pull a list of `_target_`s
into the run (issue 26 B). So a `***` is filled only at a key whose own name is secret (api_key, token,
password, ...: masking.is_secret_key), and only with a plain value (text, number, true/false); a `***` where today's
composition has a list or a dict is refused, and any other `***` is left as it is.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from normia.config.masking import MASK, is_secret_key
from normia.errors import UserError

SCALARS = (str, int, float, bool)


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a plain nested dict; a list is one value (not descended into)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def fill_masked(
    cfg: Any, recorded: dict[str, Any], today: dict[str, Any], origin: str = "the record"
) -> list[str]:
    """Put into `cfg` (a DictConfig built from `recorded`) today's value of each masked secret.

    recorded, today: plain resolved containers. Returns the keys filled; a `***` under a key whose name is not
    secret stays `***`. Raises UserError for a `***` where today's composition has a list or a dict: a mask stands
    for one plain value, never for config (it could hold `_target_`s)."""
    now = leaves(today)
    filled = []
    for key, value in leaves(recorded).items():
        if value != MASK:
            continue
        new = now.get(key)
        if isinstance(new, (list, dict)) or any(other.startswith(key + ".") for other in now):
            raise UserError(
                f"{origin}: {key} is *** (masked) in the record and a list or a dict in today's configs; a masked "
                "value is filled only with a plain value at a secret key, so nothing was run. Check the record"
            )
        if is_secret_key(key) and isinstance(new, SCALARS) and new != MASK:
            OmegaConf.update(cfg, key, new, merge=False)
            filled.append(key)
    return filled
