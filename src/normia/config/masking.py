"""The one masking function for everything that leaves the process: MLflow params, tags and artifacts, files in the
output folder, sbatch scripts, the terminal. `mask(value)` takes a config, a dict, a list or a text and returns a copy
in which no secret is left:

- a value under a secret-looking name is `***` (names are split into words, so `hfToken`, `HF_TOKEN`, `hub-token`,
  `Authorization`, `auth`, `bearer`, `tokens` are secret, while `num_tokens`, `tokens_per_s` and `tokenizer` are not);
  in a text this applies to every `name=value`, `name: value` and `"name": "value"` (an override typed as
  `+tags={hub_token: X}` or `+launcher.env.HF_TOKEN=X`, an `export HF_TOKEN=X` line, a header
  `Authorization: Bearer X`);
- a URI loses its userinfo: `postgresql://user:pass@host/db` -> `postgresql://***@host/db`;
- a value known to be secret is `***` wherever it appears, whatever the name it was copied to: the values under
  secret names of the config being masked and of this process's environment (`+tags.note=${oc.env:HF_TOKEN}`
  resolves to HF_TOKEN's value under a name that looks harmless).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Words that make a name secret wherever they stand in it.
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "creds",
        "auth",
        "oauth",
        "authorization",
        "authentication",
        "bearer",
        "apikey",
        "cookie",
        "cookies",
        "token",
        "tokens",
        "privatekey",
        "accesskey",
        "secretkey",
        "signature",
    }
)
KEY_PAIRS = frozenset(
    {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("client", "key")}
)
# A token counted, not a token held: num_tokens, max_new_tokens, tokens_per_s, bits_per_token, token_budget.
COUNTING_WORDS = frozenset(
    {"num", "n", "max", "min", "new", "total", "per", "count", "counts", "seq", "context", "vocab", "budget"}
)
COUNTING_NEXT = frozenset(
    {"per", "count", "counts", "budget", "len", "length", "s", "seen", "total", "limit"}
)
# Variables whose names look secret but hold a folder or a socket path: PWD is the working folder, not a password.
ENV_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK"})
MIN_VALUE_CHARS = 4  # a shorter secret is masked under its own name only, never searched for in other values
SUBSTRING_CHARS = 8  # from this length a known secret is also masked inside longer values

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_|$)|[A-Z]?[a-z]+|[A-Z]+|\d+")
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# name (optionally quoted, optionally with an override's +, ++ or ~), '=' or ':', value (quoted, or up to a separator)
_ASSIGNMENT = re.compile(
    r"""(?P<key>(?<![\w.\-])[+~]{0,2}[A-Za-z_][\w.\-]*)(?P<close>["']?)(?P<sep>\s*[=:]\s*)"""
    r"""(?P<value>(?:(?:Bearer|Basic|Token|token|bearer|basic)\s+)?"""
    r"""(?:"[^"\n]*"|'[^'\n]*'|\{[^{}\n]*\}|\[[^\[\]\n]*\]|[^\s,{}\[\]]+))"""
)


def words(name: str) -> list[str]:
    """'hfToken' -> ['hf', 'token']; 'HF_TOKEN' -> ['hf', 'token']; 'launcher.env.API-KEY' -> [..., 'api', 'key']."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", str(name)) for w in _WORD.findall(part)]


def is_secret_key(name: Any) -> bool:
    """A name whose value must never be shown. For a dotted path, only its last part counts."""
    parts = words(str(name).rsplit(".", 1)[-1])
    for i, word in enumerate(parts):
        before = parts[i - 1] if i else ""
        after = parts[i + 1] if i + 1 < len(parts) else ""
        if (before, word) in KEY_PAIRS:
            return True
        if word in ("token", "tokens"):
            if before in COUNTING_WORDS or after in COUNTING_WORDS | COUNTING_NEXT:
                continue
            return True
        if word in SECRET_WORDS:
            return True
    return False


def mask_uri(text: str) -> str:
    """Every URI in text without its userinfo: 'postgresql://u:p@h/db' -> 'postgresql://***@h/db'."""
    return _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


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
            if is_secret_key(match["key"].lstrip("+~")):
                found.add(_unquote(match["value"]))


def _userinfo_parts(text: str) -> list[str]:
    parts = []
    for match in _URI_USERINFO.finditer(str(text)):
        userinfo = match["userinfo"]
        parts.append(userinfo)
        if ":" in userinfo:
            parts.append(userinfo.split(":", 1)[1])
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
    text = mask_uri(text)
    text = _ASSIGNMENT.sub(_masked_assignment, text)
    for secret in secrets:
        if len(secret) >= SUBSTRING_CHARS and secret in text:
            text = text.replace(secret, MASK)
    return text


def _masked_assignment(match: re.Match[str]) -> str:
    key = match["key"].lstrip("+~")
    value = match["value"]
    if _unquote(value).startswith("$"):  # a reference ($HF_TOKEN, ${oc.env:HF_TOKEN}) shows no secret
        return match[0]
    if not is_secret_key(key):
        if value[:1] in "{[":  # a dict or list value: mask the secret names inside it
            value = value[0] + _ASSIGNMENT.sub(_masked_assignment, value[1:-1]) + value[-1]
        return f"{match['key']}{match['close']}{match['sep']}{value}"
    quote = value[0] if value[:1] in "'\"" else ""
    return f"{match['key']}{match['close']}{match['sep']}{quote}{MASK}{quote}"
