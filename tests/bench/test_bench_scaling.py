"""`normia bench scaling` on CPU: 1 and 2 ranks over gloo, efficiency = throughput(N) / (N x throughput(1))."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from schema import assert_positive, assert_timing, load_run

from normia.bench.cli import main
from normia.errors import UserError


@pytest.mark.slow
def test_scaling_two_gloo_processes(tmp_path: Path) -> None:
    args = [
        "scaling",
        "--ranks",
        "1",
        "2",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--no-plots",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    doc = load_run(tmp_path, "scaling")
    assert doc["status"] == "complete"
    one, two = doc["rows"]
    assert (one["ranks"], two["ranks"]) == (1, 2) and one["backend"] == two["backend"] == "gloo"
    for row in (one, two):
        assert row["status"] == "ok", row
        assert_timing(row, "step_ms", "step_p20_ms", "step_p80_ms")
        assert_positive(row, ("tokens_per_s", "tokens_per_s_per_rank", "efficiency", "final_loss"))
    assert one["efficiency"] == 1.0
    assert two["efficiency"] == pytest.approx(two["tokens_per_s"] / (2 * one["tokens_per_s"]))


def test_bad_ranks_and_backend_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="whole numbers"):
        main(["scaling", "--ranks", "two", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="positive"):
        main(["scaling", "--ranks", "0", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="gloo"):
        main(["scaling", "--backend", "nccl", "--device", "cpu", "--out", str(tmp_path)])


@pytest.mark.slow
def test_from_env_under_torchrun_records_each_world_and_its_efficiency(tmp_path: Path) -> None:
    """The multi-node path: processes started by torchrun (srun the same way) join one group and rank 0 writes
    scaling_world<N>; the 2-rank run's efficiency uses the 1-rank run left in the same folder."""
    args = ["--size", "tiny", "--steps", "3", "--warmup", "1", "--no-plots", "--out", str(tmp_path)]
    for n in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "normia.cli", "bench", "scaling", "--from-env", *args]  # fmt: skip
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        assert result.returncode == 0, result.stderr[-2000:]
    one = load_run(tmp_path, "scaling_world1")["rows"][0]
    two = load_run(tmp_path, "scaling_world2")["rows"][0]
    assert (one["ranks"], two["ranks"]) == (1, 2) and one["efficiency"] == 1.0
    assert_positive(two, ("tokens_per_s", "efficiency"))
    assert two["efficiency"] == pytest.approx(two["tokens_per_s"] / (2 * one["tokens_per_s"]))
