"""Which names hold a secret: `is_secret_key(name)`, for config keys, environment variables, override keys and URL
query parameters. Import-light (re only).

A name is split into words (`hfToken`, `HF_TOKEN`, `hub-token` -> hf/hub + token), and a secret word is also found
inside a word written as one (`githubtoken`, `HFTOKEN`, `apikey`, `PGPASSWORD`, `dbpass`). Secret:

- anywhere: password, passwd, passphrase, secret, credential, webhook, cookie, bearer, authorization, apikey, ...;
  the words auth, creds, pwd, jwt;
- token(s), key, pass, pat as the LAST word (or a word ending in them: `hftoken`, `sshkey`), unless the word before
  says it is counted or names data: `max_tokens`, `num_tokens`, `tokens_per_step`, `token_count`, `bos_token`,
  `pad_token_id`, `n_keys`, `sort_key`, `text_key`, `key_column`, `pass_at_k`, `file_pat` are not secret;
- the pairs api/access/private/secret/client... + key(s) wherever they stand (`api_key_file`).
Words that merely contain these letters are not: tokenizer, keyboard, passes, bypass, monkey, patience, author.
"""

from __future__ import annotations

import re
from typing import Any

# Found inside any word: `PGPASSWORD`, `aws_secret_access_key`, `slackwebhook`, `myapikey`.
SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "webhook",
    "cookie",
    "bearer",
    "authorization",
    "authentication",
    "oauth",
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "signingkey",
    "authtoken",
    "accesstoken",
    "sessionid",
)
# Secret as whole words wherever they stand in the name.
SECRET_WORDS = frozenset({"auth", "creds", "pwd", "signature"})
# (word, next word) pairs that are secret wherever they stand: api_key_file, access_key_id.
KEY_PAIRS = frozenset(
    (first, key)
    for first in ("api", "access", "private", "secret", "client", "ssh", "signing", "encryption", "license")
    for key in ("key", "keys")
)
# A counter, a limit or a rate: num_tokens, max_token, token_count, n_keys, max_pass.
COUNTING_WORDS = frozenset(
    {"num", "n", "max", "min", "total", "per", "count", "counts", "seq", "context", "vocab", "budget", "nb",
     "number", "avg", "mean"}
)  # fmt: skip
# Before the plural only, an amount of tokens: max_new_tokens, train_tokens, tokens seen (test_token is a secret).
TOKENS_COUNTED = frozenset(
    {"new", "target", "seen", "processed", "train", "training", "eval", "val", "test", "input", "output", "prompt",
     "completion", "generated", "added", "extra", "padded", "valid", "step"}
)  # fmt: skip
COUNTING_NEXT = frozenset(
    {"per", "count", "counts", "budget", "len", "length", "s", "seen", "total", "limit", "size", "rate", "num",
     "id", "ids", "type", "types", "embedding", "embeddings", "emb", "embed", "dim", "level", "index", "indices",
     "logprobs", "logits", "mask", "at", "k", "through", "threshold", "ratio", "fraction", "frac"}
)  # fmt: skip
COUNT_PREFIXES = ("num", "max", "min", "total", "avg", "mean", "nb")
# Special tokens of a tokenizer: bos_token='<s>', pad_token_id=0 are not credentials (user_token is).
SPECIAL_TOKENS = frozenset(
    {"bos", "eos", "pad", "unk", "sep", "cls", "mask", "special", "start", "end", "stop", "eot", "sos", "image",
     "audio", "video", "vision", "placeholder", "think"}
)  # fmt: skip
# key after these names a field, a column or a PRNG state: sort_key, text_key, rng_key, cache_key.
DATA_KEYS = frozenset(
    {"sort", "primary", "foreign", "unique", "cache", "partition", "shard", "group", "join", "lookup", "index",
     "hash", "dict", "map", "text", "label", "labels", "image", "audio", "video", "input", "output", "target",
     "prompt", "response", "answer", "question", "context", "instruction", "message", "messages", "chosen",
     "rejected", "caption", "class", "feature", "features", "column", "field", "metric", "monitor", "batch", "row",
     "record", "sample", "data", "dataset", "id", "name", "attr", "attribute", "state", "model", "layer", "module",
     "param", "config", "prng", "rng", "random", "seed", "query", "value", "hot", "shortcut", "table", "sequence",
     "seq", "pixel", "attention", "attn", "kv", "qk", "cond", "condition", "time", "timestamp", "date", "split",
     "domain", "task", "source", "src", "tgt", "dim", "sub", "file", "path", "lang", "language", "conversation",
     "turn", "role", "content", "tag", "tags", "event", "item", "entry", "node", "dedup", "order", "public", "pub"}
)  # fmt: skip
# A pattern, not a personal access token: file_pat, glob_pat.
PATTERN_WORDS = frozenset(
    {"file", "files", "glob", "name", "path", "regex", "re", "match", "search", "filter", "include", "exclude",
     "line", "url", "dir", "word", "split"}
)  # fmt: skip
# One-word names ending in pass that are a password: dbpass, pgpass (bypass, lowpass, compass are not).
PASS_PREFIXES = frozenset(
    {
        "db",
        "pg",
        "user",
        "admin",
        "root",
        "ssh",
        "smtp",
        "mail",
        "ftp",
        "my",
        "sql",
        "mysql",
        "redis",
        "vault",
    }
)
# English words ending in key: a name written as one word ending in key is a secret unless it is one of these.
NOT_KEYS = frozenset(
    {"monkey", "donkey", "turkey", "hockey", "jockey", "whiskey", "lackey", "hotkey", "turnkey"}
)
# Words following jwt that describe its settings, not the token: jwt_algorithm, jwt_ttl.
JWT_SETTINGS = frozenset(
    {"alg", "algorithm", "issuer", "iss", "audience", "aud", "ttl", "expiry", "exp", "lifetime"}
)

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_|$)|[A-Z]?[a-z]+|[A-Z]+|\d+")


def words(name: str) -> list[str]:
    """'hfToken' -> ['hf', 'token']; 'HF_TOKEN' -> ['hf', 'token']; 'launcher.env.API-KEY' -> [..., 'api', 'key']."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", str(name)) for w in _WORD.findall(part)]


def is_secret_key(name: Any) -> bool:
    """A name whose value must never be shown. For a dotted path, only its last part counts."""
    parts = words(str(name).rsplit(".", 1)[-1])
    for i, word in enumerate(parts):
        before = parts[i - 1] if i else ""
        after = parts[i + 1] if i + 1 < len(parts) else ""
        last = i == len(parts) - 1
        if (word, after) in KEY_PAIRS or any(part in word for part in SECRET_PARTS):
            return True
        if word == "jwt" and after not in JWT_SETTINGS:
            return True
        if word in SECRET_WORDS:
            return True
        if _secret_ending(word, before, after, last):
            return True
    return False


def _secret_ending(word: str, before: str, after: str, last: bool) -> bool:
    """token(s), key, pass, pat: a secret as the last word, or as the end of a word written as one."""
    for ending, not_before in (
        ("tokens", COUNTING_WORDS | TOKENS_COUNTED | SPECIAL_TOKENS),
        ("token", COUNTING_WORDS | SPECIAL_TOKENS),
        ("key", DATA_KEYS | COUNTING_WORDS),
        ("pass", COUNTING_WORDS),
        ("pat", PATTERN_WORDS),
    ):
        if word == ending:
            if ending.startswith("token") and not last:
                return after in ("value", "val", "str", "secret")  # hf_token_value; not token_count, token_id
            if ending == "key" and after in ("path", "file", "dir", "folder", "name"):
                return False  # ssh_key_path names where the key is
            return last and before not in not_before and after not in COUNTING_NEXT
        if word.endswith(ending) and len(word) > len(ending):
            prefix = word[: -len(ending)]
            if ending.startswith("token"):
                return not _counted(prefix) and prefix not in SPECIAL_TOKENS
            if ending == "key":
                return word not in NOT_KEYS and prefix not in DATA_KEYS and not _counted(prefix)
            if ending == "pass":
                return prefix in PASS_PREFIXES
    return False


def _counted(prefix: str) -> bool:
    """'max', 'maxnew', 'numtotal': a one-word prefix that is or starts with a counting word."""
    return prefix in COUNTING_WORDS or prefix.startswith(COUNT_PREFIXES)
