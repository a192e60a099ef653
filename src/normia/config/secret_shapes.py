"""Secrets recognised by their shape, whatever name they sit under or text they sit in: PEM private key blocks and
well-known token formats (GitHub, Hugging Face, AWS access key ids, Slack, JWT, OpenAI-style `sk-` keys).

Each shape is specific enough (a fixed prefix and a long random tail) that ordinary words, paths and numbers do not
match it. Import-light (re only).
"""

from __future__ import annotations

import re

# A PEM private key (RSA, EC, OPENSSH, ENCRYPTED, PGP ... BLOCK) up to its END line, or to the end of a cut text.
_PEM = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
TOKEN_SHAPES = {
    "github": r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    "github_pat": r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    "huggingface": r"\bhf_[A-Za-z0-9]{30,}",
    "aws_access_key_id": r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
    "slack": r"\bxox[bpoasr]-[A-Za-z0-9-]{10,}",
    "jwt": r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    "sk": r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{20,}",
}
_TOKENS = re.compile("|".join(f"(?:{shape})" for shape in TOKEN_SHAPES.values()))


def mask_shapes(text: str, mask: str = "***") -> str:
    """text with every PEM private key block and every well-known token replaced by mask (a PEM block keeps its
    BEGIN/END labels so that a reader sees what was there)."""
    text = _PEM.sub(lambda m: f"-----BEGIN {m['label']}-----{mask}-----END {m['label']}-----", text)
    return _TOKENS.sub(mask, text)


def has_secret_shape(text: str) -> bool:
    """Whether text holds a PEM private key or a well-known token."""
    return bool(_PEM.search(text) or _TOKENS.search(text))
