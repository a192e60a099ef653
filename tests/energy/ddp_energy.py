"""Lightning DDP on 2 CPU processes (gloo) with the energy callback; run by test_energy_lightning.py.
Each rank's GPU is a test double moving (rank + 1) J per training step; the node's CPU package is a fake powercap
tree that rank 0's steps move by 1 J, read through normia's real RAPL reader. Each rank writes its report.

usage: python ddp_energy.py OUT_DIR STEPS
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fakes import FakeCounter, add_joules, fake_powercap
from tiny import TinyTokens, loader, trainer

from normia.energy.callback import EnergyCallback
from normia.energy.counters import open_counters
from normia.training.process_group import close_process_group


class NodeWork(TinyTokens):
    def __init__(self, gpu: FakeCounter, rank: int, rapl: Path) -> None:
        super().__init__(gpu, train_j=rank + 1.0, val_j=(rank + 1) * 0.25)
        self.rank, self.rapl = rank, rapl

    def training_step(self, batch, idx):  # type: ignore[no-untyped-def]
        if self.rank == 0:
            add_joules(self.rapl / "intel-rapl:0", 1.0)
        return super().training_step(batch, idx)


def main(out: Path, steps: int) -> None:
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    root = out / "powercap"
    if rank == 0 and not root.exists():
        fake_powercap(root, dram=False)
    gpu = FakeCounter()

    def counters(device, leader):  # type: ignore[no-untyped-def]
        found = open_counters(device, leader, rapl_root=root)  # the real reader, on the fake tree
        found.counters.append(gpu.counter(source=f"fake total energy of GPU-{rank}"))
        return found

    energy = EnergyCallback(open_counters=counters)
    t = trainer(
        devices=2, strategy="ddp", max_steps=steps, limit_val_batches=1, val_check_interval=steps,
        num_sanity_val_steps=0, callbacks=[energy], logger=False,
    )  # fmt: skip
    t.fit(NodeWork(gpu, rank, root), loader(80, 4), loader(8, 4))
    (out / f"rank{t.global_rank}.json").write_text(json.dumps({"totals": energy.report["totals"]}))
    # as normia's own ranks do: gloo's threads left alive at exit were seen to abort the process (exit -6)
    close_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
