"""Helpers of the search tests: read a study back from its journal file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Every trial of these tests: short, quiet, no background system metrics.
QUIET = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]


def study_trials(search_dir: Path, study_name: str) -> list[Any]:
    """The study's trials as Optuna stores them (FrozenTrial)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(search_dir / "study.journal")))
    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def states(trials: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for trial in trials:
        out[trial.state.name] = out.get(trial.state.name, 0) + 1
    return out
