"""Values quoted in one-line messages: a short prefix only. A message that echoes a whole value (a 30 MB CSV field,
a column name as long as the file) costs memory and time, and floods a terminal or a Slurm log. Standard library
only: used by light paths."""

from __future__ import annotations

from typing import Any

LIMIT = 60  # characters of a value shown in a message
ERROR_LIMIT = 300  # characters of a library's own error text


def shown(value: Any, limit: int = LIMIT) -> str:
    """repr() of value's text when it is short; else the repr of its first `limit` characters, then
    '... (N characters)'. Never holds a line break (repr escapes them)."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def shown_bare(value: Any, limit: int = LIMIT) -> str:
    """value's text as is when it is short (for names quoted by the message itself), else shown(value, limit)."""
    text = str(value)
    if len(text) <= limit and text.isprintable():
        return text
    return shown(text, limit)


def shown_list(values: Any, limit: int = LIMIT, count: int = 5) -> str:
    """The first `count` values, each shown_bare, joined by ', ', with '... (N in all)' when there are more."""
    items = list(values)
    text = ", ".join(shown_bare(v, limit) for v in items[:count])
    return text + (f", ... ({len(items)} in all)" if len(items) > count else "")


def short_error(err: Any, limit: int = ERROR_LIMIT) -> str:
    """A library's error text on one line, cut at `limit` characters (it may quote the value it choked on)."""
    text = " ".join(str(err)[: limit * 4].split())
    return text if len(text) <= limit else f"{text[:limit]}... (cut)"
