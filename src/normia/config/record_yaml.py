"""YAML written elsewhere (a run's config.yaml or overrides.yaml, the config inside a checkpoint or an exported
model), parsed with bounded work.

Why: YAML aliases expand on load. A few hundred bytes of nested aliases (`b: [*a, *a, ...]` over `a: [...]`, ten
levels deep) become billions of nodes: `normia predict` on such a checkpoint took 129 s instead of 13 s, and one more
level takes hours. normia never writes an alias, so a recorded text that holds one is refused, as is a text larger
than any config normia writes (MAX_RECORDED_CHARS). The alias scan reads the YAML events only (no node is built), so
it costs time in proportion to the text.
"""

from __future__ import annotations

from typing import Any

from normia.errors import UserError

# normia's configs are a few kB (the largest, a Hugging Face run with its LoRA settings, is under 20 kB).
MAX_RECORDED_CHARS = 1_000_000


def check_recorded_text(text: str, origin: str) -> None:
    """Refuse a recorded YAML text that is too large or uses anchors/aliases, before it is loaded.

    Raises UserError naming the origin and the problem."""
    import yaml

    if len(text) > MAX_RECORDED_CHARS:
        raise UserError(
            f"{origin} holds {len(text):,} characters, more than any config normia writes "
            f"({MAX_RECORDED_CHARS:,} at most); nothing was run. Check where it came from"
        )
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise UserError(
                    f"{origin} uses YAML anchors or aliases (&name / *name), which normia never writes and which "
                    "can expand into billions of values; nothing was run. Write the values out in full"
                )
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())[:200]
        raise UserError(f"{origin} is not valid YAML ({first}); nothing was run") from None


def load_recorded_yaml(text: str, origin: str) -> Any:
    """OmegaConf's config of a recorded YAML text, after check_recorded_text. Raises UserError as it does."""
    from omegaconf import OmegaConf

    check_recorded_text(text, origin)
    return OmegaConf.create(text)
