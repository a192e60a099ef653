"""Which normia.ops kernel breaks under torch.compile on a GPU: each op, compiled, forward + backward, against eager.

Why: `normia bench train --compile on` hit "an illegal memory access" on an H200 (2026-11-30) with the Triton kernels
under bf16 autocast. CUDA errors are sticky, so every case runs in its own process (all at once, CUDA_LAUNCH_BLOCKING=1
for an exact traceback) and prints one line: ok with the largest relative difference to eager, or the error.

    python benchmarks/gpu/compile_check.py            # all cases, in parallel
    python benchmarks/gpu/compile_check.py --case rope
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

CASES = ("rms_norm", "add_rms_norm", "swiglu", "rope", "flce", "llama", "llama_torch_kernels")


def _inputs(case: str) -> tuple:
    torch.manual_seed(0)
    dev = "cuda"
    if case == "rms_norm":
        return torch.randn(4, 512, 1024, device=dev), torch.randn(1024, device=dev)
    if case == "add_rms_norm":
        x = torch.randn(4, 512, 1024, device=dev, dtype=torch.bfloat16)
        return x, torch.randn(4, 512, 1024, device=dev), torch.randn(1024, device=dev)
    if case == "swiglu":
        return tuple(torch.randn(4, 512, 2816, device=dev, dtype=torch.bfloat16) for _ in range(2))
    if case == "rope":
        q = torch.randn(4, 512, 16, 64, device=dev, dtype=torch.bfloat16)
        return (q,)
    if case == "flce":
        return (torch.randn(2048, 1024, device=dev), torch.randn(32000, 1024, device=dev) * 0.02,
                torch.randint(0, 32000, (2048,), device=dev))  # fmt: skip
    raise ValueError(case)


def _fn(case: str):  # type: ignore[no-untyped-def]
    import normia.ops as ops
    from normia.ops.modules import RotaryEmbedding

    if case == "rms_norm":
        return lambda x, w: ops.rms_norm(x, w).float().square().sum()
    if case == "add_rms_norm":
        return lambda x, r, w: sum(t.float().square().sum() for t in ops.add_rms_norm(x, r, w))
    if case == "swiglu":
        return lambda g, u: ops.swiglu(g, u).float().square().sum()
    if case == "rope":
        rope = RotaryEmbedding(64, 1024)
        return lambda q: rope(q.transpose(1, 2)).float().square().sum()
    if case == "flce":
        return lambda h, w, t: ops.fused_linear_cross_entropy(h, w, t)
    raise ValueError(case)


def run_case(case: str) -> str:
    if case.startswith("llama"):
        from normia.models.llama import Llama
        from normia.ops import set_backend

        set_backend("torch" if case == "llama_torch_kernels" else "auto")
        torch.manual_seed(0)
        model = Llama(
            vocab_size=32000, dim=1024, n_layers=2, n_heads=16, n_kv_heads=4, max_seq_len=512
        ).cuda()
        tokens = torch.randint(0, 32000, (4, 513), device="cuda")
        inputs: tuple = ((tokens[:, :-1], tokens[:, 1:]),)
        leaves = list(model.parameters())

        def fn(batch):  # type: ignore[no-untyped-def]
            return model.loss(batch)[0]
    else:
        inputs = tuple(t.requires_grad_() if t.is_floating_point() else t for t in _inputs(case))
        leaves = [t for t in inputs if t.is_floating_point()]
        fn = _fn(case)
    results = []
    for compiled in (False, True):
        f = torch.compile(fn) if compiled else fn
        for t in leaves:
            t.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = f(*inputs)
        loss.backward()
        torch.cuda.synchronize()
        results.append([loss.detach().float()] + [t.grad.float().clone() for t in leaves])
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(*results))
    return f"ok, max relative difference to eager {worst:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES)
    args = parser.parse_args()
    if args.case:
        try:
            print(f"{args.case:>20}: {run_case(args.case)}", flush=True)
        except Exception as err:  # report, then exit non-zero: the driver prints the line
            line = (str(err).strip().splitlines() or [""])[0][:300]
            print(f"{args.case:>20}: FAILED {type(err).__name__}: {line}", flush=True)
            import traceback

            traceback.print_exc(limit=-6)
            sys.exit(1)
        return
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}
    procs = {
        c: subprocess.Popen(
            [sys.executable, __file__, "--case", c],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for c in CASES
    }
    for case, proc in procs.items():
        out, _ = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.strip()]
        summary = next((ln for ln in lines if ln.strip().startswith(f"{case}:")), f"{case}: no result")
        print(summary)
        if proc.returncode:
            print("    " + "\n    ".join(lines[-14:]))


if __name__ == "__main__":
    main()
