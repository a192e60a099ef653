"""One rank of a real gloo group (started by test_ddp_validation.py): validates its EvalSampler batches of a known
per-sample table with WeightedMeans and writes the means it computes. No Lightning: a fast multi-rank check.

usage: python gloo_val_means.py RANK WORLD PORT NUM_SAMPLES BATCH_SIZE OUT.json
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from normia.data.sampler import EvalSampler
from normia.training.val_metrics import WeightedMeans


def per_sample(n: int) -> dict[str, torch.Tensor]:
    """Values whose set mean is known: a loss-like float, a 0/1 accuracy, a large value (float64 sums matter)."""
    index = torch.arange(n, dtype=torch.float32)
    return {"loss": (index * 0.37) % 1.3, "acc": (index % 3 == 0).float(), "big": 1e6 + index}


def main(rank: int, world: int, port: int, n: int, batch_size: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    values, means = per_sample(n), WeightedMeans()
    for batch in EvalSampler(n, batch_size):  # rank and world read from the process group
        means.update({k: v[batch].mean() for k, v in values.items()}, len(batch))

    def sum_across_ranks(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    result = {k: float(v) for k, v in means.compute(sum_across_ranks).items()}
    with open(out, "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    rank, world, port, n, batch_size = (int(a) for a in sys.argv[1:6])
    main(rank, world, port, n, batch_size, sys.argv[6])
