"""A callback for the secret tests, imported by the ranks through PYTHONPATH (tests/security): records whether a
value appears in this rank's environment (inherited by every process the rank starts) or in its command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L


class EnvProbe(L.Callback):
    def __init__(self, needle: str, out_dir: str):
        self.needle = needle
        self.out_dir = out_dir

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        environ = Path("/proc/self/environ").read_bytes() if Path("/proc/self/environ").exists() else b""
        found = {
            "environ": self.needle.encode() in environ or any(self.needle in v for v in os.environ.values()),
            "cmdline": self.needle.encode() in Path("/proc/self/cmdline").read_bytes(),
        }
        path = Path(self.out_dir) / f"probe-rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found))

    def state_dict(self) -> dict[str, Any]:
        return {}
