"""`normia bench scaling` on CPU: 1 and 2 ranks over gloo, efficiency = throughput(N) / (N x throughput(1))."""

from __future__ import annotations

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
