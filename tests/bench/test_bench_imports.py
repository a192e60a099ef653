"""The bench code must run on a bare GPU machine: torch, numpy and triton only (matplotlib optional)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import normia.bench.cli, normia.bench.kernels, normia.bench.train, normia.bench.scaling, normia.models.llama
heavy = sorted(m for m in ('lightning', 'hydra', 'mlflow', 'omegaconf', 'matplotlib', 'pynvml') if m in sys.modules)
print(','.join(heavy))
"""


def test_bench_imports_neither_lightning_hydra_mlflow_nor_matplotlib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"heavy modules imported by normia.bench: {out.stdout.strip()}"
