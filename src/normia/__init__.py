"""normia: config-driven distributed training, Triton kernels and benchmarks for GPU clusters.

From Python (a notebook, a script), the same as `normia train` on this machine:

    import normia
    cfg = normia.compose(["experiment=quickstart", "optim.lr=1e-3"])   # the validated config, nothing run
    summary = normia.train(["experiment=quickstart", "trainer.max_epochs=5"])
    summary.metrics["val/acc"], summary.run_id, summary.metric_history("val/loss")
    table = normia.predict(summary.run_id, "new_data.csv")           # a pandas DataFrame, as normia predict writes
    model, cfg = normia.load_run(summary.checkpoint)                 # the trained model and its recorded config

See normia.api (compose, train, load_run, predict, RunFailed, RunStopped) and normia.run_summary.RunSummary.

Kept import-light on purpose: `import normia`, `normia --help` and `normia.ops` must not pull torch, Lightning, MLflow
or Hydra. The names above are loaded on first use (PEP 562), and they import the heavy libraries only when called.
"""

from __future__ import annotations

import importlib

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms of every `normia --help` (benchmarks/startup.py);
# type checkers read this constant as typing's own.
TYPE_CHECKING = False

__version__ = "0.1.0"

# public name -> the module that defines it, imported on first access
_LAZY = {
    "compose": "normia.api",
    "train": "normia.api",
    "load_run": "normia.api",
    "predict": "normia.api",
    "RunFailed": "normia.api",
    "RunStopped": "normia.api",
    "RunSummary": "normia.run_summary",
}

__all__ = ["RunFailed", "RunStopped", "RunSummary", "__version__", "compose", "load_run", "predict", "train"]

if TYPE_CHECKING:
    from typing import Any

    from normia.api import RunFailed, RunStopped, compose, load_run, predict, train
    from normia.run_summary import RunSummary


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'normia' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
