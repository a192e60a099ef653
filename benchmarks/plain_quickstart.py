"""The quickstart's work as a plain PyTorch script: the baseline of benchmarks/whole_process.py (issue 15).

Same data, model, optimizer, schedule and epochs as `normia train experiment=quickstart`, without normia, Lightning,
Hydra or MLflow:
- data: scikit-learn's 8x8 digits scaled to [0, 1], the same seeded 80/20 split (numpy default_rng(0)), batches of 64,
  shuffled each epoch, the last partial training batch dropped (22 steps an epoch, as normia's loader);
- model: MLP 64 -> 128 -> 128 -> 10 (GELU, dropout 0.1), seed 42;
- optimizer: AdamW lr 3e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on matrices only; LR: linear warmup over
  20 steps, then cosine to 0.1 x lr over the 330 steps;
- 15 epochs, validation (loss, accuracy) after each; train loss/accuracy read every 5 steps (as normia logs);
- writes what a plain script keeps: metrics.csv (every logged value), last.pt and best.pt (model, optimizer,
  scheduler, epoch; best by val/acc) and metrics.json (the final values), in OUT (default ./plain_out), and prints
  the final metrics.

    python benchmarks/plain_quickstart.py [OUT]
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

EPOCHS, BATCH, LR, WARMUP, MIN_RATIO, LOG_EVERY, SEED = 15, 64, 3e-3, 20, 0.1, 5, 42


def load() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32).reshape(len(bunch.images), -1)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_val = round(len(x) * 0.2)
    val, train = order[:n_val], order[n_val:]
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train]), torch.from_numpy(x[val]),
            torch.from_numpy(y[val]))  # fmt: skip


def main() -> int:
    started = time.perf_counter()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "plain_out")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    x_train, y_train, x_val, y_val = load()
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Dropout(0.1), nn.Linear(128, 128), nn.GELU(),
                          nn.Dropout(0.1), nn.Linear(128, 10))  # fmt: skip
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=LR, betas=(0.9, 0.999), eps=1e-8,
    )  # fmt: skip
    steps_per_epoch = len(x_train) // BATCH
    total = EPOCHS * steps_per_epoch

    def factor(step: int) -> float:
        if step < WARMUP:
            return (step + 1) / WARMUP
        progress = min(1.0, (step - WARMUP) / max(1, total - WARMUP))
        return MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    generator = torch.Generator().manual_seed(0)
    best, step, final = -1.0, 0, {}
    with (out / "metrics.csv").open("w", newline="") as f:
        log = csv.writer(f)
        log.writerow(["step", "name", "value"])
        for epoch in range(EPOCHS):
            model.train()
            order = torch.randperm(len(x_train), generator=generator)
            for i in range(steps_per_epoch):
                idx = order[i * BATCH : (i + 1) * BATCH]
                inputs, targets = x_train[idx], y_train[idx]
                logits = model(inputs)
                loss = nn.functional.cross_entropy(logits, targets)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                if step % LOG_EVERY == 0:
                    acc = (logits.argmax(-1) == targets).float().mean()
                    final["train/loss"], final["train/acc"] = loss.item(), acc.item()
                    log.writerows(
                        [[step, "train/loss", final["train/loss"]], [step, "train/acc", final["train/acc"]]]
                    )
            model.eval()
            total_loss, correct = 0.0, 0
            with torch.no_grad():
                for i in range(0, len(x_val), BATCH):
                    logits = model(x_val[i : i + BATCH])
                    targets = y_val[i : i + BATCH]
                    total_loss += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
                    correct += int((logits.argmax(-1) == targets).sum())
            final["val/loss"], final["val/acc"] = total_loss / len(x_val), correct / len(x_val)
            log.writerows([[step, "val/loss", final["val/loss"]], [step, "val/acc", final["val/acc"]]])
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step}  # fmt: skip
            torch.save(state, out / "last.pt")
            if final["val/acc"] > best:
                best = final["val/acc"]
                torch.save(state, out / "best.pt")
    final.update({"best val/acc": best, "steps": step, "wall_s": time.perf_counter() - started})
    (out / "metrics.json").write_text(json.dumps(final, indent=2))
    for key, value in final.items():
        print(f"  {key:<16} {value:.4f}" if isinstance(value, float) else f"  {key:<16} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
