"""No bad step applied (issue 23): a step whose loss or gradients are not finite leaves the weights untouched on every
rank, decided on the device (the flag goes to the fused optimizer as `found_inf`, agreed by the ranks in one
all-reduce), and the run still fails at the next check naming that step. Before, `on_nonfinite_loss=stop` read the
loss once per logging interval and up to `log_every_n_steps - 1` diverged steps were applied in between."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from probes import weights_by_step

from normia.cli import main

HERE = Path(__file__).resolve().parent
FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]


def _errors(capsys: pytest.CaptureFixture) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def _probe(out: Path) -> list[str]:
    return ["+callbacks.weights._target_=probes.WeightsEachStep", f"+callbacks.weights.out_dir={out}"]


@pytest.mark.parametrize(
    "optim,extra",
    [
        ("sgd", []),
        ("adamw", []),
        # bf16 autocast with clipping (the LLM recipe): Lightning refuses clipping with a fused optimizer under any
        # mixed precision; normia clips itself where no GradScaler is involved (training/module.py)
        ("adamw", ["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0"]),
    ],
)
def test_a_diverging_run_applies_none_of_its_nonfinite_steps(
    workdir: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    optim: str,
    extra: list[str],
) -> None:
    """lr=1e8 diverges within a few steps; the check comes at step 20 only. Every step in between was computed,
    none applied: the weights are finite after every batch, and the error says the step was not applied."""
    monkeypatch.syspath_prepend(str(HERE))
    out = workdir / "probe"
    args = ["train", "experiment=quickstart", f"optim={optim}", "optim.lr=1e8", *FAST, "trainer.max_steps=40",
            "trainer.log_every_n_steps=20", "optim.warmup_steps=0", *extra, *_probe(out)]  # fmt: skip
    assert main(args) == 3
    (line,) = _errors(capsys)
    assert "training diverged:" in line and "that step was not applied" in line, line
    steps = weights_by_step(out, 0)
    assert len(steps) >= 5, steps
    assert all(r["finite"] for r in steps.values()), [s for s, r in steps.items() if not r["finite"]]
    bad = int(line.split(" at step ")[1].split()[0])
    after_bad = [r["sum"] for s, r in sorted(steps.items()) if s >= bad]
    assert len(set(after_bad)) == 1, "from the first bad step on, no update changed the weights"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_ranks_nan_gradient_is_skipped_by_every_rank(
    workdir: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """Rank 1's gradients turn NaN at step 3 (its FSDP shard, or its copy after DDP's all-reduce); the loss stays
    finite. Both ranks skip that update (rank 0 alone sees nothing wrong locally), the weights stay equal to those
    of step 2, and the run fails at the check naming step 3."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    out = workdir / "probe"
    args = ["train", "experiment=quickstart", *FAST, f"trainer={strategy}", "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.max_steps=8", "trainer.log_every_n_steps=6", *_probe(out),
            "+callbacks.nan._target_=probes.NanGradientAt", "+callbacks.nan.step=3", "+callbacks.nan.rank=1"]  # fmt: skip
    assert main(args) == 3
    (line,) = _errors(capfd)  # written by the rank processes
    assert "gradients are not finite at step 3 (the loss was finite); that step was not applied" in line, line
    for rank in (0, 1):
        steps = weights_by_step(out, rank)
        assert all(r["finite"] for r in steps.values()), (rank, steps)
        # the record after batch 3 is taken at global_step 4 (Lightning counts the step at its end)
        assert steps[4]["sum"] == steps[3]["sum"], (rank, steps)
        assert steps[3]["sum"] != steps[2]["sum"], (rank, "the steps before it were applied")
