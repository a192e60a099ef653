"""CPU measurement: peak memory and time of fused_linear_cross_entropy's PyTorch path against linear + cross_entropy.

Why on CPU: the chunking that keeps the (tokens, vocab) logits from ever existing is the same code on every
device, so its memory saving can be measured here, without a GPU. Each variant runs forward + backward in its
own fresh process; peak memory is the process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs after the inputs exist and a warm-up ran) minus the resident set at that moment, so it counts
everything the step allocates (logits, temporaries, gradients), not the inputs. A second, independent figure
counts the bytes of every tensor storage the step creates until it is freed (normia.bench.memory, a
TorchDispatchMode): the allocator's behaviour cannot inflate or hide anything there.

    python benchmarks/kernels_cpu_memory.py                      # N=8192, hidden 1024, vocab 32000, fp32
    python benchmarks/kernels_cpu_memory.py --tokens 1024 --repeats 1   # a quick look

Writes benchmarks/results/cpu-<date>/fused_linear_cross_entropy_memory.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("unfused", "fused")
ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _child(variant: str, tokens: int, hidden: int, vocab: int, repeats: int) -> dict:
    """Runs in a fresh process: one variant, forward + backward, peak memory then timings."""
    import torch
    import torch.nn.functional as F

    import normia.ops as ops

    ops.set_backend("torch")
    torch.manual_seed(0)
    h = torch.randn(tokens, hidden, requires_grad=True)
    w = (torch.randn(vocab, hidden) * hidden**-0.5).requires_grad_()
    t = torch.randint(0, vocab, (tokens,))
    t[::10] = -100

    def step() -> float:
        if variant == "fused":
            loss = ops.fused_linear_cross_entropy(h, w, t)
        else:
            loss = F.cross_entropy(F.linear(h, w), t)
        loss.backward()
        value = float(loss)
        h.grad = w.grad = None
        return value

    step()  # warm-up: thread pools, first-touch of allocator arenas
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    base = _status_kib("VmRSS")
    loss = step()
    peak = _status_kib("VmHWM")
    from normia.bench.memory import peak_bytes

    tensor_peak = peak_bytes(step, torch.device("cpu"), inputs=[h, w, t])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "variant": variant,
        "loss": loss,
        "peak_extra_mib": round((peak - base) / 1024, 1),
        "tensor_peak_mib": round(tensor_peak / 2**20, 1),
        "seconds_fwd_bwd": [round(s, 4) for s in times],
        "median_seconds": round(statistics.median(times), 4),
        "torch_threads": torch.get_num_threads(),
    }


def _run(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--tokens", str(args.tokens), "--hidden", str(args.hidden),
           "--vocab", str(args.vocab), "--repeats", str(args.repeats)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--repeats", type=int, default=3, help="timed forward+backward runs per variant (median)")
    p.add_argument(
        "--out", type=Path, default=None, help="results folder (default benchmarks/results/cpu-<date>)"
    )
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.tokens, args.hidden, args.vocab, args.repeats)))
        return 0

    import torch

    from normia.kernels.fused_linear_cross_entropy import chunk_rows

    runs = {v: _run(v, args) for v in VARIANTS}
    fused, unfused = runs["fused"], runs["unfused"]
    result = {
        "benchmark": "fused_linear_cross_entropy reference (PyTorch, chunked) vs F.linear + F.cross_entropy",
        "what": "forward + backward, fp32, 10% of targets ignored; peak = resident-set high-water mark above "
        "the resident set after inputs and a warm-up, each variant in a fresh process",
        "shape": {"tokens": args.tokens, "hidden": args.hidden, "vocab": args.vocab, "dtype": "float32"},
        "chunk_rows": chunk_rows(args.tokens, args.hidden, args.vocab),
        "machine": {
            "cpu": _cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "note": "shared machine: other jobs may run",
        },
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "runs": runs,
        "memory_ratio_fused_over_unfused": round(fused["peak_extra_mib"] / unfused["peak_extra_mib"], 4),
        "tensor_memory_ratio_fused_over_unfused": round(
            fused["tensor_peak_mib"] / unfused["tensor_peak_mib"], 4
        ),
        "time_ratio_fused_over_unfused": round(fused["median_seconds"] / unfused["median_seconds"], 3),
        "loss_abs_diff": abs(fused["loss"] - unfused["loss"]),
        "target_memory_ratio": 0.25,
    }
    result["meets_memory_target"] = (
        max(result["memory_ratio_fused_over_unfused"], result["tensor_memory_ratio_fused_over_unfused"])
        <= 0.25
    )
    out = args.out or ROOT / "benchmarks" / "results" / f"cpu-{dt.date.today().isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fused_linear_cross_entropy_memory.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'variant':<10}{'peak RSS MiB':>14}{'tensor peak MiB':>17}{'median s (fwd+bwd)':>20}")
    for v in VARIANTS:
        r = runs[v]
        print(f"{v:<10}{r['peak_extra_mib']:>14.1f}{r['tensor_peak_mib']:>17.1f}{r['median_seconds']:>20.3f}")
    print(f"memory ratio fused/unfused: RSS {result['memory_ratio_fused_over_unfused']:.3f}, tensors "
          f"{result['tensor_memory_ratio_fused_over_unfused']:.3f} (target <= 0.25); "
          f"time ratio: {result['time_ratio_fused_over_unfused']:.2f}; |loss diff| {result['loss_abs_diff']:.2e}")  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
