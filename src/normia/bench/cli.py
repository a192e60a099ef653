"""`normia bench kernels|train|scaling`: argument parsing and validation only; the work is in kernels.py,
train.py and scaling.py. Bad names list the valid ones; every run writes into one results folder per device and date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from normia.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from normia.bench.kernels import KernelsConfig

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Measuring time per timing. A CPU kernel at the default CPU shapes takes 0.05-5 ms, so 0.1 s is still 20 to 2000
# calls per timing (blocked_autorange), enough for a stable median, and halves the CPU run (issue 25 D6).
GPU_MIN_TIME_S, CPU_MIN_TIME_S = 0.2, 0.1


def _split(values: list[str] | None) -> list[str]:
    """Accept both `--x a b` and `--x a,b`."""
    return [v for item in values or [] for v in item.split(",") if v]


def _choose(kind: str, names: list[str], valid: tuple[str, ...] | list[str]) -> list[str]:
    if not names or names == ["all"]:
        return list(valid)
    for name in names:
        if name not in valid:
            hint = did_you_mean(name, valid)
            listing = "" if "(valid:" in hint else f"; valid {kind}s: {', '.join(valid)}"
            raise UserError(f"unknown {kind} '{name}'{hint}{listing}")
    return list(dict.fromkeys(names))


def _dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name is None:  # bf16 is what GPUs train in; CPUs run fp32 far faster than bf16
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UserError(
            f"unknown dtype '{name}'{did_you_mean(name, DTYPES)}; valid dtypes: {', '.join(DTYPES)}"
        )
    return DTYPES[name]


def _out_dir(arg: str | None, device: torch.device) -> Path:
    if arg:
        return Path(arg)
    from normia.bench.device import describe

    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    return Path("benchmarks") / "results" / f"{describe(device).slug}-{date}"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda[:N]")
    p.add_argument(
        "--dtype", default=None, help=f"one of {', '.join(DTYPES)} (default bf16 on GPU, fp32 on CPU)"
    )
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/<device>-<date>)")
    p.add_argument("--name", default=None, help="results file base name (default: the benchmark's name)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (matplotlib is slow to start)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default for kernels on a CPU: the physical cores this process may "
                   "use that other processes are not using, see normia/bench/threads.py; otherwise torch's)")  # fmt: skip
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="stop starting new measurements after S seconds; the rest are recorded as skipped")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normia bench",
        description="Benchmarks measured against limits measured in the same run (copy bandwidth, matmul rate, "
        "bf16 peak). Results: JSON, CSV, markdown and PNG in benchmarks/results/<device>-<date>/ unless --out.",
    )
    sub = parser.add_subparsers(dest="what", metavar="kernels|train|scaling", required=True)

    k = sub.add_parser("kernels", help="time, GB/s and %% of copy bandwidth per kernel, shape and provider")
    k.add_argument("--kernels", nargs="+", help="kernel names or 'all' (default all)")
    k.add_argument(
        "--providers", nargs="+", help="triton, reference, eager, compile, liger or 'all' (default all)"
    )
    k.add_argument(
        "--shapes", nargs="+", help="e.g. 4096x4096 (applies to kernels with 2 dims) or rms_norm:4096x4096"
    )
    k.add_argument("--passes", nargs="+", help="fwd, bwd, fwd+bwd or 'all' (default all)")
    k.add_argument("--min-time", type=float, default=None, metavar="S",
                   help=f"measuring time per timing (s; default {GPU_MIN_TIME_S:g} on GPU, {CPU_MIN_TIME_S:g} on CPU)")  # fmt: skip
    _common(k)

    t = sub.add_parser("train", help="tokens/s, step time, peak memory, MFU and energy of LLaMA-style models")
    t.add_argument("--sizes", nargs="+", help="model sizes (default: tiny small on CPU, 125m 350m 1b on GPU)")
    t.add_argument("--batch-size", type=int, default=None, help="sequences per step (default per size)")
    t.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default per size)")
    t.add_argument("--steps", type=int, default=10, help="timed steps per size")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    t.add_argument("--compile", default="off", choices=("off", "on", "both", "blocks"),
                   help="torch.compile the model's loss: off, on, or both (one row each); blocks: compile each "
                   "transformer block instead (one compilation shared by all the layers: fast to compile)")  # fmt: skip
    t.add_argument("--float8", default="off", choices=("off", "on", "both"),
                   help="train the Linear layers in float8 through torchao (Hopper/Ada GPUs): off, on, or both "
                   "(a bf16 and a float8 row); refused with the reason elsewhere")  # fmt: skip
    t.add_argument("--kernels-backend", default="auto", choices=("auto", "torch", "triton"),
                   help="force normia.ops' backend in the model")  # fmt: skip
    t.add_argument(
        "--activation-checkpointing", action="store_true", help="recompute activations in backward"
    )
    _common(t)

    s = sub.add_parser("scaling", help="throughput against number of ranks, and scaling efficiency")
    s.add_argument("--ranks", nargs="+", help="rank counts, e.g. 1 2 4 (default 1 2 on CPU, 1..GPUs on GPU)")
    s.add_argument("--size", default=None, help="model size (default tiny on CPU, 350m on GPU)")
    s.add_argument("--batch-size", type=int, default=None, help="sequences per rank per step (weak scaling)")
    s.add_argument("--seq-len", type=int, default=None, help="tokens per sequence")
    s.add_argument("--steps", type=int, default=10, help="timed steps per rank count")
    s.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    s.add_argument(
        "--backend", default="auto", choices=("auto", "gloo", "nccl"), help="torch.distributed backend"
    )
    s.add_argument("--from-env", action="store_true",
                   help="join the group torchrun/srun set up (RANK, WORLD_SIZE, MASTER_ADDR...) and record one row")  # fmt: skip
    _common(s)
    return parser


def _stop_on_sigterm() -> None:
    """A job killed by its time limit (timeout, Slurm) gets SIGTERM: end like Ctrl-C, so the results are marked
    interrupted and keep their rows."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _stop_on_sigterm()
    from normia.bench.device import resolve_device

    device = resolve_device(args.device)
    dtype = _dtype(args.dtype, device)
    args.threads_reason = _set_threads(args.threads, args.what == "kernels" and device.type == "cpu")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError(f"--time-budget must be > 0 seconds, got {args.time_budget}")
    if args.what == "kernels":
        return _kernels(args, device, dtype)
    if args.what == "train":
        return _train(args, device, dtype)
    return _scaling(args, device, dtype)


def _set_threads(threads: int | None, choose: bool) -> str | None:
    """Apply --threads, or (when `choose`: kernels on a CPU) the default of normia.bench.threads; return why torch
    has the threads it has, or None when it keeps its own default."""
    if threads is not None:
        if threads <= 0:
            raise UserError(f"--threads must be > 0, got {threads}")
        torch.set_num_threads(threads)
        return "--threads"
    if not choose:
        return None
    from normia.bench.threads import default_cpu_threads

    threads, why = default_cpu_threads()
    torch.set_num_threads(threads)
    return why


def _kernels(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> int:
    from normia.bench import kernels
    from normia.bench.kernel_specs import KERNELS, parse_shape
    from normia.bench.providers import PROVIDERS

    names = _choose("kernel", _split(args.kernels), list(KERNELS))
    passes = _choose("pass", _split(args.passes), kernels.PASSES)
    providers = _choose("provider", _split(args.providers), PROVIDERS)
    shapes = {
        n: list(KERNELS[n].gpu_shapes if device.type == "cuda" else KERNELS[n].cpu_shapes) for n in names
    }
    if args.shapes:
        shapes = {n: [] for n in names}
        for text in _split(args.shapes):
            target, _, dims = text.rpartition(":")
            if target and target not in names:
                raise UserError(
                    f"shape '{text}' names kernel '{target}', which is not selected{did_you_mean(target, names)}"
                )
            try:
                shape = parse_shape(dims)
            except ValueError as err:
                raise UserError(str(err)) from err
            fits = [n for n in ([target] if target else names) if len(KERNELS[n].dims) == len(shape)]
            if not fits:
                wanted = ", ".join(
                    f"{n}: {'x'.join(KERNELS[n].dims)}" for n in ([target] if target else names)
                )
                raise UserError(f"shape '{dims}' has {len(shape)} dims; the selected kernels take {wanted}")
            for n in fits:
                shapes[n].append(shape)
        names = [n for n in names if shapes[n]]
    cfg = kernels.KernelsConfig(
        kernels=names,
        shapes=shapes,
        providers=providers,
        dtype=dtype,
        device=device,
        out_dir=_out_dir(args.out, device),
        min_time_s=_min_time(args.min_time, device),
        time_budget_s=args.time_budget,
        plots=not args.no_plots,
        name=args.name or args.what,
        passes=passes,
        threads_reason=args.threads_reason,
    )
    print(_kernels_header(cfg, args.threads_reason), flush=True)
    writer = kernels.run(cfg)
    print(writer.markdown())
    print(f"results: {writer.json_path}, .csv, .md")
    from normia.bench.quality import summary_lines

    for line in summary_lines(writer.doc):
        print(line)
    return 0


def _min_time(arg: float | None, device: torch.device) -> float:
    """--min-time, else the device's default (GPU_MIN_TIME_S, CPU_MIN_TIME_S: see their comment)."""
    if arg is None:
        return GPU_MIN_TIME_S if device.type == "cuda" else CPU_MIN_TIME_S
    if arg <= 0:
        raise UserError(f"--min-time must be > 0 seconds, got {arg:g}")
    return arg


def _kernels_header(cfg: KernelsConfig, threads_reason: str | None) -> str:
    """One line before any measurement: what is measured, and with how many threads and why."""
    n_shapes = sum(len(v) for v in cfg.shapes.values())
    threads = f"threads {torch.get_num_threads()}" + (f" ({threads_reason})" if threads_reason else "")
    dtype = str(cfg.dtype).removeprefix("torch.")
    return (f"normia bench kernels on {cfg.device} ({dtype}): {len(cfg.kernels)} kernels, {n_shapes} shapes, "
            f"providers {', '.join(cfg.providers)}; min-time {cfg.min_time_s:g} s; {threads}")  # fmt: skip


def _train(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> int:
    from normia.bench import train
    from normia.bench.model_sizes import SIZES, default_sizes

    sizes = _choose("size", _split(args.sizes), list(SIZES)) if args.sizes else default_sizes(device)
    for flag in ("batch_size", "seq_len", "steps"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    cfg = train.TrainBenchConfig(
        sizes=sizes,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        steps=args.steps,
        warmup=max(0, args.warmup),
        compile={"off": (False,), "on": (True,), "both": (False, True), "blocks": ("blocks",)}[args.compile],
        float8={"off": (False,), "on": (True,), "both": (False, True)}[args.float8],
        kernels_backend=args.kernels_backend,
        activation_checkpointing=args.activation_checkpointing,
        dtype=dtype,
        device=device,
        out_dir=_out_dir(args.out, device),
        time_budget_s=args.time_budget,
        plots=not args.no_plots,
        name=args.name or args.what,
    )
    writer = train.run(cfg)
    print(writer.markdown())
    print(f"results: {writer.json_path}, .csv, .md")
    return 0


def _scaling(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> int:
    from normia.bench import scaling
    from normia.bench.model_sizes import SIZES

    size = args.size or ("tiny" if device.type == "cpu" else "350m")
    _choose("size", [size], list(SIZES))
    try:
        ranks = [int(r) for r in _split(args.ranks)] or scaling.default_ranks(device)
    except ValueError as err:
        raise UserError(f"--ranks takes whole numbers, e.g. --ranks 1 2 4 ({err})") from err
    if any(r <= 0 for r in ranks):
        raise UserError(f"--ranks must be positive, got {ranks}")
    backend = args.backend if args.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise UserError("--backend nccl needs GPUs: use --backend gloo on CPU")
    cfg = scaling.ScalingConfig(
        ranks=sorted(set(ranks)),
        size=size,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        steps=args.steps,
        warmup=max(0, args.warmup),
        backend=backend,
        dtype=dtype,
        device_type=device.type,
        out_dir=_out_dir(args.out, device),
        time_budget_s=args.time_budget,
        plots=not args.no_plots,
        name=args.name or args.what,
    )
    writer = scaling.run_from_env(cfg) if args.from_env else scaling.run(cfg)
    if writer is not None:
        print(writer.markdown())
        print(f"results: {writer.json_path}, .csv, .md")
    return 0
