"""Per-interval speed of `normia train` (issue 23): tokens/s, TFLOP/s and MFU per device, logged at logging steps
only, in the units their names say; MFU omitted with the reason where no peak is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from normia.training.speed import DevicePeak, FlopsCount, IntervalSpeed, model_flops


def test_interval_rates_and_mfu_in_their_units() -> None:
    speed = IntervalSpeed(world_size=2, flops=FlopsCount(1e9, "given"), peak=DevicePeak(1e13))
    speed.batch_start(0.0)
    for step in range(
        10
    ):  # 10 steps of 1000 tokens (8 samples) per rank, 0.2 s each, 0.05 s of it between steps
        if step:
            speed.batch_start(step * 0.2)
        speed.batch_end(step * 0.2 + 0.15, samples=8, tokens=1000)
    out = speed.take(2.0, peak_memory_gb=3.5)
    assert out["speed/tokens_per_s"] == pytest.approx(2 * 10 * 1000 / 2.0)  # all ranks
    assert out["speed/samples_per_s"] == pytest.approx(2 * 10 * 8 / 2.0)
    assert out["speed/step_time_s"] == pytest.approx(0.2)
    assert out["speed/between_steps_frac"] == pytest.approx(9 * 0.05 / 2.0)
    assert out["speed/tflops_per_device"] == pytest.approx(1e9 * 5_000 / 1e12)  # per device: half the tokens
    assert out["speed/mfu"] == pytest.approx(0.5)
    assert out["speed/peak_memory_gb"] == 3.5
    assert speed.take(2.0) == {}  # the next interval starts empty


def test_no_mfu_without_a_peak_or_a_flop_count() -> None:
    no_peak = IntervalSpeed(1, FlopsCount(1e9, "given"), DevicePeak(None, "no bf16 peak for a cpu device"))
    no_peak.batch_start(0.0)
    no_peak.batch_end(1.0, 4, 400)
    out = no_peak.take(1.0)
    assert "speed/mfu" not in out and out["speed/tflops_per_device"] == pytest.approx(400 * 1e9 / 1e12)
    assert no_peak.summary()["mfu_not_measured"] == "no bf16 peak for a cpu device"
    assert model_flops(object(), tokens=0, samples=8).per_token is None  # not a token model: no 6N per sample


@pytest.mark.slow
def test_normia_train_logs_speed_at_logging_steps_only(workdir: Path, normia_cli, fast_overrides) -> None:
    from mlflow import MlflowClient

    proc = normia_cli(
        "train", "model=llama_tiny", "data=synthetic_lm", "trainer.max_steps=12", "trainer.max_epochs=null",
        "trainer.log_every_n_steps=4", "name=speed", *fast_overrides, cwd=workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MFU       not measured: no bf16 peak for a cpu device" in proc.stdout
    done = json.loads(next((workdir / "outputs" / "speed").glob("*/done.json")).read_text())
    assert done["speed"]["tflops_per_device"] > 0 and "flops_per_token" in done["speed"]["flops_counted"]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    history = client.get_metric_history(done["mlflow_run_id"], "speed/tokens_per_s")
    assert sorted(m.step for m in history) == [4, 8, 12]
    assert all(m.value > 0 for m in history)
    assert not client.get_metric_history(done["mlflow_run_id"], "speed/mfu")


def test_reproduce_does_not_compare_timings() -> None:
    """speed/* are timings: `normia reproduce --check` must judge results only (a re-run is never as fast)."""
    from normia.reproduce import NOT_COMPARED

    for key in ("speed/step_time_s", "speed/mfu", "speed/between_steps_frac", "speed/peak_memory_gb"):
        assert key.startswith(NOT_COMPARED), key
