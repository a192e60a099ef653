"""Fused linear cross-entropy on a GPU: time (fwd+bwd) and peak memory against the tokens per chunk, beside eager.

Why: at 8192 tokens x 4096 hidden x 128256 vocab the fused loss ran slower than eager (46 vs 41 ms, H200,
2026-11-30). Each chunk's d(weight) matmul re-reads and re-writes the (vocab, hidden) accumulator, so fewer, larger
chunks trade memory for time; this measures where that trade sits.

    python benchmarks/gpu/flce_chunks.py [--tokens 8192] [--hidden 4096] [--vocab 128256] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json

import torch
import triton.testing

import normia.ops as ops
from normia.kernels._triton import LIMITS
from normia.kernels.fused_linear_cross_entropy import chunk_rows


def time_ms(fn) -> float:
    return float(triton.testing.do_bench(fn, warmup=50, rep=400, return_mode="median"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    h = torch.randn(args.tokens, args.hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(args.vocab, args.hidden, device="cuda", dtype=torch.bfloat16) * 0.02).requires_grad_()
    t = torch.randint(0, args.vocab, (args.tokens,), device="cuda")

    def step(fused: bool) -> None:
        h.grad = w.grad = None
        loss = (
            ops.fused_linear_cross_entropy(h, w, t)
            if fused
            else torch.nn.functional.cross_entropy((h @ w.T).float(), t)
        )
        loss.backward()

    rows = []
    auto = chunk_rows(args.tokens, args.hidden, args.vocab, "cuda")
    for chunk in ["eager", 0, 256, 512, 1024, 2048, 4096]:
        LIMITS.flce_chunk_rows = 0 if chunk == "eager" else chunk
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fused = chunk != "eager"
        ms = time_ms(lambda fused=fused: step(fused))
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
        label = f"auto ({auto})" if chunk == 0 else str(chunk)
        rows.append({"chunk_rows": label, "ms": round(ms, 3), "peak_mb_above_inputs": round(peak_mb, 1)})
        print(f"{label:>12}  {ms:8.3f} ms  {peak_mb:9.1f} MB", flush=True)
    LIMITS.flce_chunk_rows = 0
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "shape": [args.tokens, args.hidden, args.vocab], "dtype": "bfloat16", "rows": rows}  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
