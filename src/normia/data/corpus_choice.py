"""Which bundled corpus a data config reads: the one it sets, or its `default_corpus` when it names no data of its
own (issue 25 D: a given data.path wins over a preset's bundled corpus instead of being refused, and a preset without
data.path no longer trains on the bundled text silently in place of the user's). One rule for the data modules and
for everything that reads a recorded config (predict's examples, export's input example, validation's checks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OWN_DATA_KEYS = ("path", "shards")


def chosen_corpus(data: Mapping[str, Any] | Any) -> str | None:
    """data.corpus, else data.default_corpus when neither data.path nor data.shards is set; None otherwise."""
    corpus = data.get("corpus")
    if corpus:
        return str(corpus)
    if any(data.get(key) for key in OWN_DATA_KEYS):
        return None
    default = data.get("default_corpus")
    return str(default) if default else None
