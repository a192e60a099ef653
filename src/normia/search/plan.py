"""What every worker needs to run trials, written once by `normia search` as <search folder>/search.json (mode
0600: the overrides and the tracking URI may hold credentials) and read by each worker, local or on Slurm."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PLAN_FILE = "search.json"


@dataclass
class SearchPlan:
    """study_name/storage: the Optuna study; search_dir: the shared folder (trial-<n>/ folders, logs, outputs);
    n_trials: COMPLETE+PRUNED trials to reach; trial_overrides: the space file's then the command line's;
    params: the space as JSON; monitor/direction: the objective; parent_run_id/tracking_uri: MLflow (None: off)."""

    study_name: str
    storage: str
    search_dir: str
    n_trials: int
    trial_overrides: list[str]
    params: dict[str, Any]
    monitor: str
    direction: str
    pruner: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    config_dir: str | None = None
    max_failures: int = 0

    def write(self) -> Path:
        """Atomically, mode 0600."""
        path = Path(self.search_dir) / PLAN_FILE
        tmp = path.with_name(f".{PLAN_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.replace(tmp, path)
        return path


def read_plan(path: str | Path) -> SearchPlan:
    return SearchPlan(**json.loads(Path(path).read_text()))
