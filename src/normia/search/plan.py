"""What every worker needs to run trials, written once by `normia search` as <search folder>/search.json (mode
0600: the overrides and the tracking URI may hold credentials) and read by each worker, local or on Slurm.

The plan names the config folder whose packages the workers import, so nobody else may change it: the search folder
is private (normia.private_paths), the file is written through an exclusive temporary name, and each worker gets its
sha256 with its command (or its pickled Slurm job) and refuses a plan that differs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from normia.errors import UserError

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

    def write(self) -> tuple[Path, str]:
        """(path, sha256) of search.json, written atomically with mode 0600 through an exclusive temporary file in
        the search folder (a link planted there is never written through). Raises OSError if the folder refuses."""
        from normia.private_paths import write_private

        data = json.dumps(asdict(self), indent=2).encode()
        path = write_private(Path(self.search_dir) / PLAN_FILE, data)
        return path, hashlib.sha256(data).hexdigest()


def read_plan(path: str | Path, sha256: str | None = None) -> SearchPlan:
    """The plan in path. With sha256 (what `normia search` passed to its workers), a file whose digest differs is
    refused: UserError saying so (someone or something changed it after it was written)."""
    data = Path(path).read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(
            f"{path} changed since normia search wrote it (its sha256 is not the one the workers were given): "
            "run normia search again"
        )
    return SearchPlan(**json.loads(data))
