"""Runs interp_cases.py (every kernel, forward and backward) under Triton's interpreter in a subprocess.

TRITON_INTERPRET must be set before triton is imported, and this pytest process may have imported it already,
so the cases run in a fresh process: one for all kernels, since starting torch + triton costs seconds each time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("interp_cases.py")


@pytest.mark.slow
@pytest.mark.interpreter
def test_every_kernel_under_triton_interpreter() -> None:
    pytest.importorskip("triton", reason="the Triton interpreter needs triton installed")
    env = {**os.environ, "TRITON_INTERPRET": "1", "NORMIA_KERNELS": "triton"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", str(CASES)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=CASES.parents[2])
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
    assert proc.returncode == 0, (
        f"{len(failed)} interpreter case(s) failed: {failed}\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    )
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
