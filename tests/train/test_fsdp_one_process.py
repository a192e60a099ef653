"""trainer=fsdp on one device (one GPU of an H200 node, or the CPU here) trains instead of being refused: FSDP2 with a
world size of 1 is how a user checks a sharded config before asking for more GPUs (issue 15 runs it on one H200)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from normia.cli import main

HERE = Path(__file__).resolve().parent


def test_fsdp_on_one_process_trains_with_dtensor_parameters(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, preflight refused it ("needs at least 2 processes"); the probe also shows FSDP2 really wrapped the
    parameters (DTensor), not a silent fallback to a plain single-device run."""
    probe_dir = workdir / "probe"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    code = main(
        [
            "train",
            "experiment=quickstart",
            "logger=none",
            "trainer=fsdp",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.max_steps=2",
            "trainer.max_epochs=-1",
            "trainer.check_val_every_n_epoch=null",
            "trainer.enable_progress_bar=false",
            "+callbacks.shards._target_=probes.ShardProbe",
            f"+callbacks.shards.out_dir={probe_dir}",
        ]
    )
    assert code == 0
    probe = json.loads((probe_dir / "shards-rank0.json").read_text())
    assert probe["strategy"] == "ModelParallelStrategy"
    assert {p["type"] for p in probe["params"].values()} == {"DTensor"}
