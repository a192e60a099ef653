"""Cost of the device-side non-finite guard (issue 23, "No bad step applied"): median time of one training step
(forward, backward, AdamW step) with torch's default AdamW on this device, the fused AdamW normia now builds, and the
fused AdamW given the guard's `found_inf` flag (training/health.py step_is_bad), in one process, alternating.

    python benchmarks/nonfinite_guard.py [--steps 200] [--out benchmarks/results/cpu-<date>]

Ratios only on a CPU (one thread, a shared machine); absolute times mean something on a GPU only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# name -> (layer widths, batch): the quickstart's MLP, and the ~30 ms step of benchmarks/train_overhead.py's run
MODELS = {"quickstart_mlp": ([64, 128, 10], 64), "mlp_1536": ([1536, 1536, 1536, 10], 128)}
VARIANTS = {"default": (None, False), "fused": (True, False), "fused_guard": (True, True)}


def _median_step_s(
    model: torch.nn.Module, x: torch.Tensor, fused: bool | None, guard: bool, steps: int
) -> float:
    from normia.training.health import step_is_bad

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = model(x).square().mean()
        loss.backward()
        if guard:
            optimizer.grad_scale = None
            optimizer.found_inf = step_is_bad([loss.detach()], optimizer, x.device)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if guard:
            del optimizer.found_inf, optimizer.grad_scale
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / f"cpu-{_dt.date.today().isoformat()}")
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    rows = []
    for name, (widths, batch) in MODELS.items():
        torch.manual_seed(0)
        layers: list[torch.nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1]).to(device)
        x = torch.randn(batch, widths[0], device=device)
        best: dict[str, float] = {}
        for _ in range(args.rounds):  # alternating, the best median of the rounds
            for variant, (fused, guard) in VARIANTS.items():
                t = _median_step_s(model, x, fused, guard, args.steps)
                best[variant] = min(best.get(variant, t), t)
        rows.append(
            {
                "model": name,
                "step_s": best,
                "guard_over_fused_speed": best["fused"] / best["fused_guard"],
                "guarded_over_default_speed": best["default"] / best["fused_guard"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "benchmark": "nonfinite_guard",
        "date": _dt.date.today().isoformat(),
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.machine()} (1 thread)",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nonfinite_guard.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
