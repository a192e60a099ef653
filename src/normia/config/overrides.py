"""Command-line overrides as the user typed them.

Parsed with Hydra's own grammar (so `normia train` and `normia eval` read a value the same way), one at a time (so a
bad one is named), with a key given twice refused (Hydra would keep the last and a sweep would lose a dimension).
A sweep expands into jobs that keep each value's text as typed (`1e-3`, not `0.001`; `${x}` unresolved), and every
job gets an identity that does not depend on the order of the arguments: its folder follows from it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from normia.config.secrets import is_secret_key
from normia.errors import UserError

# Characters that have a meaning in Hydra's override grammar: a value holding none of them can simply be quoted.
_HYDRA_SYNTAX = set(",[]{}()'\"\\:$ ")


@dataclass(frozen=True)
class Override:
    """One command-line override: its text, its key and the text of each of its values (several for a sweep)."""

    text: str
    key: str
    prefix: str
    values: tuple[str, ...]
    identity: tuple[str, ...]

    @property
    def is_sweep(self) -> bool:
        return len(self.values) != 1

    def job_text(self, index: int) -> str:
        """The override of one job of the sweep, with that value's text as typed."""
        if not self.is_sweep:
            return self.text
        return f"{self.prefix}{self.key}={self.values[index]}"


def parse_override(text: str) -> Any:
    """Hydra's parse of one override. Raises UserError naming the override and, for a value Hydra's grammar
    cannot hold unquoted (an '=' or a non-ASCII letter), the quoted form to type instead."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(text)
    except HydraException as err:  # OverrideParseException, or a lexer error on a non-ASCII letter
        raise UserError(_parse_message(text, str(err))) from None


def _parse_message(text: str, hydra_text: str) -> str:
    key, eq, value = text.partition("=")
    if not eq:
        return f"cannot read '{text}': write overrides as key=value (e.g. optim.lr=3e-4) or group=option"
    if value and not (_HYDRA_SYNTAX & set(value)):
        quoted = f'{key}="{value}"'
        return f"cannot read '{text}': quote the value, e.g. '{quoted}' (with the outer quotes for the shell)"
    first = hydra_text.strip().splitlines()[0] if hydra_text.strip() else "syntax error"
    return f"cannot read '{text}' ({first}); write key=value and quote a value holding spaces or commas"


def as_override(key: str, value: str) -> str:
    """`key=value` ready to paste into a shell: quoted when Hydra would not read the value back as this string
    (a path holding '=', a space or a non-ASCII letter)."""
    plain = f"{key}={value}"
    try:
        if parse_override(plain).value() == value:
            return shlex.quote(plain)
    except UserError:
        pass
    if '"' not in value:
        return f"'{key}=\"{value}\"'"
    return plain


def parse_overrides(texts: list[str]) -> list[Override]:
    """Every override parsed, sweeps expanded into the text of each value. Raises UserError for an override that
    does not parse, a key given twice, a sweep with no value, or a sweep kind normia does not run."""
    parsed = [_override(text) for text in texts]
    _refuse_repeated_keys(parsed)
    return parsed


def _override(text: str) -> Override:
    hydra_override = parse_override(text)
    key = hydra_override.key_or_group
    if not key:
        raise UserError(f"'{text}' has no key: write key=value, e.g. optim.lr=3e-4")
    if hydra_override.package is not None:
        key = f"{key}@{hydra_override.package}"
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(hydra_override.type.name, "")
    if not hydra_override.is_sweep_override():
        value = text.partition("=")[2] if "=" in text else ""
        return Override(text, key, prefix, (value,), (_identity(hydra_override.value()),))
    values, identity = _sweep_values(text, hydra_override)
    if not values:
        raise UserError(
            f"'{text}' gives no value, so the sweep would have no job: give it at least one value"
        )
    return Override(text, key, prefix, tuple(values), tuple(identity))


def _sweep_values(text: str, hydra_override: Any) -> tuple[list[str], list[str]]:
    kind = hydra_override.value_type.name
    if kind in ("INTERVAL_SWEEP", "GLOB_CHOICE_SWEEP"):
        what = "interval()" if kind == "INTERVAL_SWEEP" else "glob()"
        raise UserError(f"'{text}': {what} is not supported by normia's sweeps; list the values: a,b,c")
    strings = list(hydra_override.sweep_string_iterator())
    if kind == "RANGE_SWEEP":
        return strings, strings
    elements = list(hydra_override.value().list)
    raw = _split_top_level(_sweep_body(text.partition("=")[2].strip(), kind))
    values = raw if len(raw) == len(elements) else strings
    return values, [_identity(e) for e in elements]


def _sweep_body(value_text: str, kind: str) -> str:
    if kind == "CHOICE_SWEEP":
        match = re.fullmatch(r"choice\((.*)\)", value_text, flags=re.DOTALL)
        return match.group(1) if match else value_text
    return value_text


def _split_top_level(text: str) -> list[str]:
    """'a,[1,2],"x,y"' -> ['a', '[1,2]', '"x,y"']: commas inside brackets or quotes do not split."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p] if text.strip() else []


def _identity(value: Any) -> str:
    """One text per value, whatever its spelling: 1e-3 and 0.001 are the same float."""
    return json.dumps(value, sort_keys=True, default=str)


def _refuse_repeated_keys(parsed: list[Override]) -> None:
    seen: dict[str, Override] = {}
    for override in parsed:
        first = seen.setdefault(override.key, override)
        if first is not override:
            hint = (
                f"to sweep over all the values, list them once: {override.key}="
                f"{','.join([*first.values, *override.values])}"
                if not (first.prefix or override.prefix) and first.values[0] and override.values[0]
                else "keep one"
            )
            raise UserError(f"{override.key} is given twice ('{first.text}' and '{override.text}'): {hint}")


def expand(parsed: list[Override]) -> list[list[str]]:
    """Every combination of the sweep values (Hydra's basic sweeper order: the last argument varies fastest),
    each job as override texts."""
    ranges = [range(len(o.values)) for o in parsed]
    return [[o.job_text(i) for o, i in zip(parsed, combo)] for combo in itertools.product(*ranges)]


def job_identity(texts: list[str]) -> str:
    """A job's overrides in a canonical form: sorted by key, each value in one spelling. Same identity, same job,
    whatever the order or spelling of the arguments."""
    lines = []
    for override in parse_overrides(texts):
        lines.append(f"{override.prefix}{override.key}={'|'.join(override.identity)}")
    return "\n".join(sorted(lines))


def job_folder_name(texts: list[str], swept: set[str]) -> str:
    """A folder name for one sweep job: the swept values (readable) and a hash of the job's whole identity."""
    digest = hashlib.sha1(job_identity(texts).encode()).hexdigest()[:8]
    parts = []
    for override in sorted(parse_overrides(texts), key=lambda o: o.key):
        leaf = override.key.rsplit(".", 1)[-1]
        if override.key in swept and not is_secret_key(leaf):  # a secret never names a folder
            parts.append(f"{leaf}-{override.identity[0].strip(chr(34))}")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-._")[:80]
    return f"{slug}_{digest}" if slug else digest


def sweep_identity(parsed: list[Override]) -> str:
    """The sweep's identity: its overrides sorted by key, the values of each as a set (order does not matter)."""
    lines = [f"{o.prefix}{o.key}={'|'.join(sorted(set(o.identity)))}" for o in parsed]
    return "\n".join(sorted(lines))


def explicit_keys(overrides: list[str]) -> set[str]:
    """Dotted keys the user set on the command line (`trainer.devices=3`, `+x=1`, `++x=1`)."""
    keys = set()
    for override in overrides:
        key, eq, _ = override.lstrip("+~").partition("=")
        if eq:
            keys.add(key.strip())
    return keys
