"""Keep the terminal for what matters: Lightning's tips and device banners and MLflow's INFO lines go to WARNING,
and warnings a normia user cannot act on are dropped. NORMIA_VERBOSE=1 shows everything."""

from __future__ import annotations

import logging
import os
import warnings

# Loggers whose INFO lines are banners and tips: device summaries, "Initializing distributed" per rank, CUDA devices.
QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.distributed",
    "lightning.pytorch.accelerators.cuda",
    "mlflow",
)
# Warnings that are not actionable under normia (message regexes, as warnings.filterwarnings takes them).
NOT_ACTIONABLE = (
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*LeafSpec.*",
    ".*does not have many workers.*",
    # normia's launcher owns Slurm: the job is already placed, `srun python ...` is not for the user to add.
    ".*The `srun` command is available on your system but is not used.*",
    # normia eval / resume rebuild their own callbacks on purpose; the checkpoint's callback states are optional.
    ".*callbacks used to create the checkpoint need to be provided.*",
    ".*The dirpath has changed from.*",
    # A resumed run writes into its own checkpoint folder on purpose.
    ".*Checkpoint directory .* exists and is not empty.*",
    # normia checks `monitor` against the model's metrics after the sanity check (train/health.py); a run that
    # ends between validations is not a misspelling.
    ".*could not find the monitored key in the returned metrics.*",
)


def quiet_libraries() -> None:
    if os.environ.get("NORMIA_VERBOSE", "") not in ("", "0"):
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in NOT_ACTIONABLE:
        warnings.filterwarnings("ignore", message=message)
