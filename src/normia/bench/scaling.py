"""`normia bench scaling`: data-parallel (DDP) training throughput against the number of ranks, with weak scaling
(a fixed batch per rank) and scaling efficiency = throughput(N) / (N x throughput(1)).

Ranks are processes spawned here (gloo on CPU, nccl on GPUs, one GPU each), or, across nodes, processes started by
torchrun or srun (`--from-env`), each of which records its world size's row.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from normia.bench import device as devinfo
from normia.bench.model_sizes import SIZES, build_llama
from normia.bench.plots import line_plot
from normia.bench.results import ResultsWriter
from normia.bench.timing import Timing
from normia.bench.train import TrainStep, random_batches, time_steps

COLUMNS = (
    "ranks", "backend", "model", "batch_per_rank", "seq_len", "threads_per_rank", "status", "step_ms",
    "step_p20_ms", "step_p80_ms", "tokens_per_s", "tokens_per_s_per_rank", "efficiency", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class ScalingConfig:
    ranks: list[int]
    size: str
    batch_size: int | None
    seq_len: int | None
    steps: int
    warmup: int
    backend: str  # gloo or nccl
    dtype: torch.dtype
    device_type: str  # cpu or cuda
    out_dir: Path
    time_budget_s: float | None = None
    plots: bool = True
    name: str = "scaling"  # results file base name: <out_dir>/<name>.json, .csv, .md
    threads_per_rank: int | None = None


def default_ranks(device: torch.device) -> list[int]:
    if device.type == "cuda":
        n = torch.cuda.device_count()
        return sorted({1, *[k for k in (2, 4, 8) if k <= n], n})
    return [1, 2]


class _DDPLoss(nn.Module):
    """DDP synchronises gradients only through its forward(), so the model's loss is called from one."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.model.loss((inputs, targets))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _threads(cfg: ScalingConfig) -> int:
    """Same threads per rank at every rank count, so that N ranks never oversubscribe the cores."""
    if cfg.threads_per_rank:
        return cfg.threads_per_rank
    return max(1, (os.cpu_count() or 1) // max(cfg.ranks)) if cfg.device_type == "cpu" else 4


def _measure(rank: int, world: int, local_rank: int, cfg: ScalingConfig) -> dict:
    """Body of one rank, inside an initialised process group: train `steps` DDP steps, return rank 0's timing."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(_threads(cfg))
    if cfg.device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    s = SIZES[cfg.size]
    batch, seq_len = cfg.batch_size or s.batch_size, cfg.seq_len or s.seq_len
    torch.manual_seed(0)  # identical initial weights on every rank, as DDP expects
    model = build_llama(cfg.size, seq_len).to(device)
    ddp = DDP(_DDPLoss(model), device_ids=[local_rank] if device.type == "cuda" else None)
    step = TrainStep(_DDPLossAdapter(ddp), cfg.dtype, device, compile=False)
    batches = random_batches(2, batch, seq_len, s.vocab_size, device, seed=1000 + rank)
    dist.barrier()
    timing, loss, _joules = time_steps(step, batches, cfg.warmup, cfg.steps, device)
    # The slowest rank sets the pace: each step's time is the largest over ranks.
    per_step = torch.tensor(timing.samples_ms, dtype=torch.float64, device=device)
    dist.all_reduce(per_step, op=dist.ReduceOp.MAX)
    slowest = Timing.from_samples(per_step.tolist(), "wall clock per step, synchronised, slowest rank")
    return {
        "rank": rank,
        "world": world,
        "batch": batch,
        "seq_len": seq_len,
        "median_ms": slowest.median_ms,
        "p20_ms": slowest.p20_ms,
        "p80_ms": slowest.p80_ms,
        "samples_ms": slowest.samples_ms,
        "loss": loss,
    }


class _DDPLossAdapter(nn.Module):
    """Gives the DDP-wrapped model the `loss(batch)` interface TrainStep calls."""

    def __init__(self, ddp: nn.Module) -> None:
        super().__init__()
        self.ddp = ddp

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return self.ddp(*batch)


def _spawned(rank: int, world: int, port: int, cfg: ScalingConfig, result_path: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    if cfg.device_type == "cuda":
        torch.cuda.set_device(rank)  # before the group exists, so NCCL binds each rank to its own GPU
    dist.init_process_group(cfg.backend, rank=rank, world_size=world, timeout=_dt.timedelta(minutes=5))
    try:
        result = _measure(rank, world, rank, cfg)
        # DDP's C++ reducer holds the gloo group and sits in reference cycles (module hooks): freed only by a later
        # GC, possibly after destroy_process_group or during interpreter exit, where the group's worker threads are
        # torn down from a destructor ("terminate called without an active exception", SIGABRT once in CI). Free
        # it now, while the group is alive and both ranks are still here.
        gc.collect()
        if rank == 0:
            Path(result_path).write_text(json.dumps(result))
        # Leave together: a rank that tears the group down while its peer is still in gloo's last exchange makes
        # the peer abort (SIGABRT seen once in CI on 2 loaded cores).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(cfg: ScalingConfig) -> ResultsWriter:
    """Spawn each rank count in turn on this node and record a row per count."""
    info = devinfo.describe(torch.device(cfg.device_type))
    writer = ResultsWriter(
        cfg.out_dir, cfg.name, {**devinfo.provenance(info), "config": _cfg_dict(cfg)}, COLUMNS
    )
    status = "failed"
    base_tps: float | None = None
    try:
        started = time.monotonic()
        for n in cfg.ranks:
            row = _row_base(cfg, n)
            if cfg.time_budget_s is not None and time.monotonic() - started > cfg.time_budget_s:
                writer.add(
                    {**row, "status": "skipped", "reason": f"time budget of {cfg.time_budget_s:g} s spent"}
                )
                continue
            if cfg.device_type == "cuda" and n > torch.cuda.device_count():
                reason = f"only {torch.cuda.device_count()} GPU(s) visible on this node; use --from-env across nodes"
                writer.add({**row, "status": "skipped", "reason": reason})
                continue
            with tempfile.TemporaryDirectory() as tmp:
                result_path = os.path.join(tmp, "rank0.json")
                try:
                    mp.spawn(_spawned, args=(n, _free_port(), cfg, result_path), nprocs=n, join=True)
                    result = json.loads(Path(result_path).read_text())
                except Exception as err:  # a failed rank count is recorded, the others still run
                    first = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
                    writer.add({**row, "status": "error", "reason": first})
                    continue
            if n == 1:
                base_tps = _tokens_per_s(result)
            writer.add(_row(row, result, base_tps))
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        writer.finish(status, plot=functools.partial(plot, prefix=cfg.name) if cfg.plots else None)
    return writer


def run_from_env(cfg: ScalingConfig) -> ResultsWriter | None:
    """Join the process group set up by torchrun (RANK, WORLD_SIZE, LOCAL_RANK) or srun (SLURM_PROCID, ...),
    measure this world size, and on rank 0 write `scaling_world<N>.*`; efficiency uses scaling_world1.json if an
    earlier single-rank run left one in the same folder."""
    env = os.environ
    rank = int(env.get("RANK", env.get("SLURM_PROCID", "0")))
    world = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", "1")))
    local_rank = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")))
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", "29500")
    if cfg.device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(cfg.backend, rank=rank, world_size=world, timeout=_dt.timedelta(minutes=10))
    try:
        result = _measure(rank, world, local_rank, cfg)
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return None
    info = devinfo.describe(torch.device(cfg.device_type))
    name = f"{cfg.name}_world{world}"
    writer = ResultsWriter(cfg.out_dir, name, {**devinfo.provenance(info), "config": _cfg_dict(cfg)}, COLUMNS)
    base_tps = _tokens_per_s(result) if world == 1 else _baseline(cfg.out_dir / f"{cfg.name}_world1.json")
    writer.add(_row(_row_base(cfg, world), result, base_tps))
    writer.finish("complete")
    return writer


def _baseline(path: Path) -> float | None:
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, KeyError, ValueError):
        return None
    return next((r["tokens_per_s"] for r in rows if r.get("status") == "ok"), None)


def _tokens_per_s(result: dict) -> float:
    return result["world"] * result["batch"] * result["seq_len"] / (result["median_ms"] * 1e-3)


def _row_base(cfg: ScalingConfig, n: int) -> dict:
    s = SIZES[cfg.size]
    return {
        "ranks": n,
        "backend": cfg.backend,
        "model": cfg.size,
        "batch_per_rank": cfg.batch_size or s.batch_size,
        "seq_len": cfg.seq_len or s.seq_len,
        "threads_per_rank": _threads(cfg) if cfg.device_type == "cpu" else None,
    }


def _row(base: dict, result: dict, base_tps: float | None) -> dict:
    tps = _tokens_per_s(result)
    n = result["world"]
    return {
        **base,
        "status": "ok",
        "step_ms": result["median_ms"],
        "step_p20_ms": result["p20_ms"],
        "step_p80_ms": result["p80_ms"],
        "tokens_per_s": tps,
        "tokens_per_s_per_rank": tps / n,
        "efficiency": None if base_tps is None else tps / (n * base_tps),
        "final_loss": result["loss"],
        "samples_ms": result["samples_ms"],
    }


def _cfg_dict(cfg: ScalingConfig) -> dict:
    d = asdict(cfg)
    d["dtype"] = str(cfg.dtype).removeprefix("torch.")
    d["out_dir"] = str(cfg.out_dir)
    return d


def plot(rows: list[dict], out_dir: Path, prefix: str = "scaling") -> list[Path]:
    path = line_plot(
        [r for r in rows if r.get("status") == "ok"],
        out_dir / f"{prefix}.png",
        x="ranks",
        panels=[
            ("tokens_per_s", "throughput (tokens/s, all ranks)"),
            ("efficiency", "scaling efficiency (fraction of N x 1 rank)"),
        ],
        line="backend",
        x_label="ranks (processes)",
        series_label=lambda b: f"{b} (torch.distributed backend)",
        title="weak scaling: throughput(N) / (N x throughput(1))",
    )
    return [path] if path else []
