"""The arguments of `normia search`: its own key=value arguments (search=, n_trials=, workers=, storage=, pruner=,
sampler=, study_name=) taken out of the command line; everything else is an override of every trial."""

from __future__ import annotations

from dataclasses import dataclass, field

from normia.errors import UserError

SEARCH_KEYS = ("search", "n_trials", "workers", "storage", "pruner", "sampler", "study_name")


@dataclass
class SearchArgs:
    """The search's own arguments; `overrides`: everything else, for every trial."""

    space: str
    n_trials: int
    workers: int = 1
    storage: str | None = None
    pruner: str | None = None
    sampler: str | None = None
    study_name: str | None = None
    overrides: list[str] = field(default_factory=list)


def split_args(texts: list[str]) -> SearchArgs:
    """Take the search's own key=value arguments out; UserError for a missing or malformed one."""
    own: dict[str, str] = {}
    overrides = []
    for text in texts:
        key, eq, value = text.partition("=")
        if eq and key in SEARCH_KEYS:
            if key in own:
                raise UserError(f"{key} is given twice ({key}={own[key]} and {text}); keep one")
            own[key] = value
        elif eq and key.lstrip("+~") in SEARCH_KEYS:
            raise UserError(f"'{text}' is an argument of normia search: write it without '{key[0]}'")
        elif text.startswith("-"):
            raise UserError(f"unknown option {text}; see normia search --help")
        else:
            overrides.append(text)
    if "search" not in own:
        raise UserError(
            "normia search needs search=SPACE, a file of configs/search/ (e.g. search=quickstart)"
        )
    if "n_trials" not in own:
        raise UserError("normia search needs n_trials=N, the number of trials to finish (e.g. n_trials=12)")
    return SearchArgs(
        space=own["search"],
        n_trials=_positive(own["n_trials"], "n_trials"),
        workers=_positive(own.get("workers", "1"), "workers"),
        storage=own.get("storage") or None,
        pruner=own.get("pruner") or None,
        sampler=own.get("sampler") or None,
        study_name=own.get("study_name") or None,
        overrides=overrides,
    )


def _positive(text: str, key: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{key}={text}: give a whole number of 1 or more")
    return value
