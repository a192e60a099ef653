"""The one masking function for everything that leaves the process: MLflow params, tags and artifacts, files in the
output folder, sbatch scripts, the terminal. `mask(value)` takes a config, a dict, a list or a text and returns a copy
in which no secret is left:

- a value under a secret name is `***` (config/secret_names.py says which: `hfToken`, `HF_TOKEN`, `githubtoken`,
  `GITHUB_PAT`, `db_pass`, `jwt`, `slack_webhook`, `tokens` are secret; `num_tokens`, `tokens_per_s`, `tokenizer`,
  `key_column`, `passes` are not); in a text this applies to every `name=value`, `"name": "value"`, and to a
  `name: value` that starts a YAML line or sits in a `{...}` mapping (an override typed as `+tags={hub_token: X}` or
  `+launcher.env.HF_TOKEN=X`, an `export HF_TOKEN=X` line, a header `Authorization: Bearer X`), never to the word
  after a label in a sentence (`the text has 6044 tokens: too short` stays as it is);
- a URI loses its userinfo and its secret query parameters' values: `postgresql://user:pass@host/db?password=p`
  -> `postgresql://***@host/db?password=***`;
- a PEM private key block and a well-known token (`ghp_`, `github_pat_`, `hf_`, `AKIA`, `xoxb-`, a JWT, `sk-`) are
  `***` wherever they are (config/secret_shapes.py);
- a value known to be secret is `***` wherever it appears, whatever the name it was copied to: the values under
  secret names of the config being masked and of this process's environment (`+tags.note=${oc.env:HF_TOKEN}`
  resolves to HF_TOKEN's value under a name that looks harmless).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from normia.config.secret_names import is_secret_key, words
from normia.config.secret_shapes import mask_shapes

__all__ = ["MASK", "is_secret_key", "mask", "mask_shapes", "mask_text", "mask_uri", "secret_values", "words"]

MASK = "***"
# Variables whose names look secret but hold a folder or a socket path: PWD is the working folder, not a password.
ENV_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK"})
MIN_VALUE_CHARS = 4  # a shorter secret is masked under its own name only, never searched for in other values
SUBSTRING_CHARS = 8  # from this length a known secret is also masked inside longer values

_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*")
# a query parameter of a URI: ?password=X&sslmode=require
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#;?\s]+)=(?P<value>[^&#;\s'\"]*)")
# before a `name: value` in a text, what makes it a YAML line or a flow mapping entry rather than a sentence:
# nothing but indentation, a diff or list marker, or a comment sign since the line's start
_LINE_START = re.compile(r"[ \t+\-#>]*")
# name (optionally quoted, optionally with an override's +, ++ or ~), '=' or ':', value (quoted, or up to a separator)
_ASSIGNMENT = re.compile(
    r"""(?P<key>(?<![\w.\-])[+~]{0,2}[A-Za-z_][\w.\-]*)(?P<close>["']?)(?P<sep>\s*[=:]\s*)"""
    r"""(?P<value>(?:(?:Bearer|Basic|Token|token|bearer|basic)\s+)?"""
    r"""(?:"[^"\n]*"|'[^'\n]*'|\{[^{}\n]*\}|\[[^\[\]\n]*\]|[^\s,{}\[\]]+))"""
)


def mask_uri(text: str) -> str:
    """Every URI in text without its userinfo and the values of its secret-named query parameters:
    'postgresql://u:p@h/db?password=p&sslmode=require' -> 'postgresql://***@h/db?password=***&sslmode=require'."""
    return _URI.sub(lambda m: _masked_query(_URI_USERINFO.sub(lambda u: f"{u['scheme']}{MASK}@", m[0])), text)


def _masked_query(uri: str) -> str:
    def one(param: re.Match[str]) -> str:
        if not is_secret_key(param["name"]) or not param["value"]:
            return param[0]
        return f"{param['lead']}{param['name']}={MASK}"

    return _QUERY_PARAM.sub(one, uri)


def secret_values(obj: Any = None, environ: dict[str, str] | None = None) -> set[str]:
    """Values that are secret wherever they are copied to: those under secret names in obj (a config or container)
    and in the environment, and the userinfo of URIs found in either."""
    found: set[str] = set()
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if is_secret_key(name) and value and name not in ENV_NOT_SECRET:
            found.add(value)
        found.update(_userinfo_parts(value))
    if obj is not None:
        _collect(_plain(obj), found)
    return {v for v in found if len(v) >= MIN_VALUE_CHARS}


def mask(obj: Any, secrets: Iterable[str] | None = None) -> Any:
    """A masked copy of obj: a DictConfig/ListConfig comes back as one (resolved), a dict/list as a plain container,
    a text as a text. `secrets`: values to hide wherever they appear (default: secret_values(obj))."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    known = secret_values(obj) if secrets is None else set(secrets)
    ordered = sorted(known, key=len, reverse=True)
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.create(_mask_obj(_plain(obj), ordered))
    return _mask_obj(obj, ordered)


def mask_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """mask() for a text (a printed line, a script, an override), with the secrets of this process's environment."""
    return str(mask(str(text), secret_values() if secrets is None else secrets))


def _plain(obj: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def _collect(obj: Any, found: set[str]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if is_secret_key(key) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                found.add(str(value))
            _collect(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _collect(value, found)
    elif isinstance(obj, str):
        found.update(_userinfo_parts(obj))
        for match in _ASSIGNMENT.finditer(obj):
            value = _unquote(match["value"])
            if is_secret_key(match["key"].lstrip("+~")) and _structured(match) and not value.startswith("$"):
                found.add(value)


def _userinfo_parts(text: str) -> list[str]:
    """The userinfo (and its password) and the secret query parameters' values of the URIs in text."""
    parts = []
    for uri in _URI.findall(str(text)):
        for match in _URI_USERINFO.finditer(uri):
            userinfo = match["userinfo"]
            parts.append(userinfo)
            if ":" in userinfo:
                parts.append(userinfo.split(":", 1)[1])
        parts += [p["value"] for p in _QUERY_PARAM.finditer(uri) if is_secret_key(p["name"]) and p["value"]]
    return parts


def _unquote(value: str) -> str:
    value = re.sub(r"^(?:Bearer|Basic|Token|token|bearer|basic)\s+", "", value)
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _mask_obj(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, dict):
        return {
            key: (MASK if is_secret_key(key) and value is not None else _mask_obj(value, secrets))
            for key, value in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_mask_obj(value, secrets) for value in obj]
    if isinstance(obj, str):
        return _mask_str(obj, secrets)
    return obj


def _mask_str(text: str, secrets: list[str]) -> str:
    if text in secrets:
        return MASK
    text = mask_shapes(text, MASK)
    text = mask_uri(text)
    text = _ASSIGNMENT.sub(_masked_assignment, text)
    for secret in secrets:
        if len(secret) >= SUBSTRING_CHARS and secret in text:
            text = text.replace(secret, MASK)
    return text


def _structured(match: re.Match[str]) -> bool:
    """Whether a matched `name=value` / `name: value` is an assignment rather than words of a sentence.

    `name=value` always is (an override, a shell line, a query). `name: value` is when the name is quoted (JSON, a
    Python dict), when the value is a credential (`Authorization: Bearer X`), or when the name starts a YAML line
    or an entry of a flow mapping (`{hub_token: X}`); in `the text has 6044 tokens: too short` it is prose."""
    if (
        "=" in match["sep"]
        or match["close"]
        or re.match(r"(?:Bearer|Basic|Token|bearer|basic)\s", match["value"])
    ):
        return True
    line = match.string[: match.start()].rsplit("\n", 1)[-1]
    return bool(_LINE_START.fullmatch(line) or line.count("{") > line.count("}"))


def _masked_assignment(match: re.Match[str], inside: bool = False) -> str:
    """The matched assignment with its value masked when its name is secret; `inside`: within a {...} or [...]
    value, where every `name: value` is a mapping entry."""
    key = match["key"].lstrip("+~")
    value = match["value"]
    if _unquote(value).startswith("$"):  # a reference ($HF_TOKEN, ${oc.env:HF_TOKEN}) shows no secret
        return match[0]
    if not is_secret_key(key) or not (inside or _structured(match)):
        if value[:1] in "{[":  # a dict or list value: mask the secret names inside it
            inner = _ASSIGNMENT.sub(lambda m: _masked_assignment(m, inside=True), value[1:-1])
            value = value[0] + inner + value[-1]
        return f"{match['key']}{match['close']}{match['sep']}{value}"
    quote = value[0] if value[:1] in "'\"" else ""
    return f"{match['key']}{match['close']}{match['sep']}{quote}{MASK}{quote}"
