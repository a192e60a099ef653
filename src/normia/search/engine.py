"""Optuna's pruner and sampler from their settings (`pruner=median|asha|none`, `sampler=tpe|random`, or the
space file's `pruner:`/`sampler:` mappings, whose other keys are the class's own arguments)."""

from __future__ import annotations

from typing import Any

from normia.errors import UserError, did_you_mean

PRUNERS = ("median", "asha", "none")
SAMPLERS = ("tpe", "random")


def make_pruner(settings: dict[str, Any]) -> Any:
    """median: MedianPruner (a trial below the median of earlier trials at the same validation stops); asha:
    SuccessiveHalvingPruner (asynchronous successive halving); none: NopPruner. Other keys are the pruner's own
    arguments (n_startup_trials, n_warmup_steps, min_resource, reduction_factor...). UserError for a bad one."""
    import optuna

    name = str(settings.get("name", "median"))
    kwargs = {k: v for k, v in settings.items() if k != "name"}
    classes = {
        "median": optuna.pruners.MedianPruner,
        "asha": optuna.pruners.SuccessiveHalvingPruner,
        "none": optuna.pruners.NopPruner,
    }
    if name not in classes:
        raise UserError(f"pruner={name} is not known{did_you_mean(name, PRUNERS)}")
    if name == "median":
        kwargs.setdefault("n_startup_trials", 2)
        kwargs.setdefault("n_warmup_steps", 0)
    try:
        return classes[name](**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"pruner {name}: {err}") from None


def make_sampler(settings: dict[str, Any], seed: int | None) -> Any:
    """tpe (default; Optuna's TPESampler, random for its first n_startup_trials) or random; `seed` differs per
    worker so that parallel workers do not draw the same start-up points."""
    import optuna

    name = str(settings.get("name", "tpe"))
    kwargs = {k: v for k, v in settings.items() if k != "name"}
    kwargs.setdefault("seed", seed)
    if name == "tpe":
        kwargs.setdefault("n_startup_trials", 5)
        kwargs.setdefault("constant_liar", True)  # parallel workers avoid proposing what another is running
        cls: Any = optuna.samplers.TPESampler
    elif name == "random":
        cls = optuna.samplers.RandomSampler
    else:
        raise UserError(f"sampler={name} is not known{did_you_mean(name, SAMPLERS)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"sampler {name}: {err}") from None
