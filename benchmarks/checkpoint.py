"""Checkpoint save and resume of an FSDP2 LLaMA on 2 ranks (--world) (issue 22, "Measure"): the old rank-0 gather (Lightning's
ModelParallelStrategy with save_distributed_checkpoint=False, what normia did before), sharded synchronous DCP and
sharded asynchronous DCP (normia's ShardedCheckpointStrategy: the same torch calls, without a Trainer around them),
beside the disk's own write bandwidth measured in the same run for the same number of bytes.

    python benchmarks/checkpoint.py [--presets 125m,350m] [--backend gloo|nccl] [--world 2] [--out DIR]

Per preset and mode: blocking_s (the step loop is held: for synchronous modes the whole save; for the async mode
the async_save call plus the wait for staging before the next step's weight update, the next step's forward and
backward running meanwhile, exactly as normia's ShardedCheckpointStrategy does),
total_s (until the checkpoint is complete on disk), resume_s (weights and optimizer back into the sharded model),
and per rank the extra host memory during the save (peak RSS during it minus RSS before, sampled every 2 ms) beside
the rank's own shard (its parameters and optimizer state). The goals: sharded total_s <= 1.5 x bytes / measured
bandwidth; async blocking_s <= 10% of the sharded synchronous save; extra memory <= 1.2 x the rank's shard (plus
the staging copy in async mode). Timings are medians of --repeats saves, max over ranks.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# name -> Llama arguments (vocab 32000, tied embeddings; 125m is configs/model/llama_125m.yaml)
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_hidden": 128},  # a smoke run
    "125m": {"dim": 768, "n_layers": 12, "n_heads": 12, "n_kv_heads": 4, "ffn_hidden": 2048},
    "350m": {"dim": 1024, "n_layers": 24, "n_heads": 16, "n_kv_heads": 4, "ffn_hidden": 2816},
    "1b": {"dim": 2048, "n_layers": 16, "n_heads": 32, "n_kv_heads": 8, "ffn_hidden": 8192},
}
MODES = ("gather_rank0", "sharded_sync", "sharded_async")


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The largest RSS of this process while the block runs, sampled every 2 ms by a thread."""

    def __enter__(self) -> PeakRss:
        self.before = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _build(preset: str, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
    """The model sharded with fully_shard (per block, then the root) and AdamW with its state after one step."""
    from torch.distributed.fsdp import fully_shard

    from normia.models.llama import Llama

    torch.manual_seed(0)
    model = Llama(vocab_size=32000, max_seq_len=64, tie_embeddings=True, **PRESETS[preset]).to(device)
    for block in model.layers:
        fully_shard(block)
    fully_shard(model)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    _train_step(model, optim)
    own = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    own += sum(
        t.to_local().numel() * t.element_size() if hasattr(t, "to_local") else t.numel() * t.element_size()
        for state in optim.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor)
    )
    return model, optim, own


def _train_step(
    model: torch.nn.Module, optim: torch.optim.Optimizer, wait_before_update: Any = None
) -> float:
    """One forward, backward and AdamW step; the seconds spent waiting for `wait_before_update` (a future) between
    the backward and the update, which is when a pending async checkpoint blocks normia's training."""
    device = next(model.parameters()).device
    tokens = torch.randint(0, 32000, (1, 65), device=device)
    loss, _ = model.loss((tokens[:, :-1], tokens[:, 1:]))
    loss.backward()
    waited = 0.0
    if wait_before_update is not None:
        started = time.perf_counter()
        wait_before_update.result()
        waited = time.perf_counter() - started
    optim.step()
    optim.zero_grad(set_to_none=True)
    return waited


def _sharded_state(model: torch.nn.Module, optim: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(cpu_offload=True)  # as Lightning's ModelParallelStrategy asks for them
    return {
        "state_dict": get_model_state_dict(model, options=options),
        "optimizer_0": get_optimizer_state_dict(model, optim, options=options),
    }


def _save(
    mode: str, model: torch.nn.Module, optim: torch.optim.Optimizer, folder: Path, group: Any
) -> tuple[float, float, PeakRss]:
    """(blocking_s, total_s, memory) of one save into `folder` (created by rank 0 beforehand)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    dist.barrier()
    with PeakRss() as memory:
        start = time.perf_counter()
        if mode == "gather_rank0":
            full = StateDictOptions(full_state_dict=True, cpu_offload=True)
            state = {
                "state_dict": get_model_state_dict(model, options=full),
                "optimizer_states": [get_optimizer_state_dict(model, optim, options=full)],
            }
            if dist.get_rank() == 0:
                with open(folder / "model.ckpt", "wb") as handle:
                    torch.save(state, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
            del state
            blocking = total = time.perf_counter() - start
        elif mode == "sharded_sync":
            dcp.save(_sharded_state(model, optim), checkpoint_id=folder, process_group=group)
            blocking = total = time.perf_counter() - start
        else:  # as ShardedCheckpointStrategy: staging in a thread, waited for before the next weight update
            from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

            cuda = torch.cuda.is_available()
            stager = DefaultStager(StagingOptions(cuda, False, True, cuda))
            response = dcp.async_save(
                _sharded_state(model, optim), checkpoint_id=folder, process_group=group, async_stager=stager
            )
            blocking = time.perf_counter() - start
            blocking += _train_step(model, optim, wait_before_update=response.staging_completion)
            response.upload_completion.result()
            stager.close()
            total = time.perf_counter() - start
    return _max(blocking), _max(total), memory


def _resume(
    mode: str, model: torch.nn.Module, optim: torch.optim.Optimizer, folder: Path, group: Any
) -> float:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    dist.barrier()
    start = time.perf_counter()
    if mode == "gather_rank0":
        state = (
            torch.load(folder / "model.ckpt", mmap=True, weights_only=True)
            if dist.get_rank() == 0
            else {"state_dict": {}, "optimizer_states": [{}]}
        )
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(model, state["state_dict"], options=options)
        set_optimizer_state_dict(model, optim, state["optimizer_states"][0], options=options)
    else:
        state = _sharded_state(model, optim)
        dcp.load(state, checkpoint_id=folder, process_group=group)
        set_model_state_dict(model, state["state_dict"])
        set_optimizer_state_dict(model, optim, state["optimizer_0"])
    return _max(time.perf_counter() - start)


def _write_bandwidth(folder: Path, nbytes: int) -> float:
    """Seconds for every rank to write its share of `nbytes` (8 MiB writes, fsync) at the same time."""
    block = os.urandom(8 << 20)
    share = nbytes // dist.get_world_size()
    dist.barrier()
    start = time.perf_counter()
    with open(folder / f"raw-{dist.get_rank()}.bin", "wb") as handle:
        left = share
        while left > 0:
            left -= handle.write(block[: min(left, len(block))])
        handle.flush()
        os.fsync(handle.fileno())
    return _max(time.perf_counter() - start)


def _max(value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _bytes_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world)}
    )
    torch.set_num_threads(1)
    dist.init_process_group(args.backend, rank=rank, world_size=world)
    device = torch.device("cuda", rank) if args.backend == "nccl" else torch.device("cpu")
    group = dist.new_group(backend="gloo")
    rows = []
    for preset in args.presets.split(","):
        model, optim, own = _build(preset, device)
        for mode in args.modes.split(","):
            results = []
            for _ in range(args.repeats):
                folder = Path(args.scratch) / f"{preset}-{mode}"
                if rank == 0:
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir(parents=True)
                dist.barrier()
                blocking, total, memory = _save(mode, model, optim, folder, group)
                nbytes = int(_max(float(_bytes_on_disk(folder) if rank == 0 else 0)))  # every rank calls _max
                resume = _resume(mode, model, optim, folder, group)
                extra = _max(float(memory.peak - memory.before))
                raw = Path(args.scratch) / f"raw-{preset}"
                if rank == 0:
                    shutil.rmtree(raw, ignore_errors=True)
                    raw.mkdir(parents=True)
                dist.barrier()
                write_s = _write_bandwidth(raw, nbytes)
                results.append((blocking, total, resume, extra, nbytes, write_s))
                dist.barrier()
                if rank == 0:
                    shutil.rmtree(folder, ignore_errors=True)
                    shutil.rmtree(raw, ignore_errors=True)
            med = [statistics.median(r[i] for r in results) for i in range(6)]
            own_max = _max(float(own))
            row = {
                "preset": preset,
                "mode": mode,
                "params": sum(p.numel() for p in model.parameters()),
                "checkpoint_bytes": int(med[4]),
                "blocking_s": med[0],
                "total_s": med[1],
                "resume_s": med[2],
                "extra_host_bytes_max_rank": int(med[3]),
                "own_shard_bytes_max_rank": int(own_max),
                "extra_over_shard": med[3] / own_max,
                "disk_write_s_same_bytes": med[5],
                "disk_write_gb_per_s": med[4] / med[5] / 1e9,
                "total_over_disk": med[1] / med[5],
            }
            rows.append(row)
            if rank == 0:
                print(json.dumps(row), flush=True)
        del model, optim
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    from normia.bench.device import cpu_model

    by = {(r["preset"], r["mode"]): r for r in rows}
    goals = []
    for preset in args.presets.split(","):
        sync, asyn = by.get((preset, "sharded_sync")), by.get((preset, "sharded_async"))
        gather = by.get((preset, "gather_rank0"))
        if sync is None:
            continue  # the goals compare with the synchronous sharded save
        goal: dict[str, Any] = {
            "preset": preset,
            "sharded_total_over_disk": sync["total_over_disk"],
            "goal_total": "<= 1.5",
            "sharded_sync_extra_over_shard": sync["extra_over_shard"],
            "goal_memory": "<= 1.2",
        }
        if asyn is not None:
            goal.update(
                async_blocking_over_sync_total=asyn["blocking_s"] / sync["total_s"],
                goal_async="<= 0.10",
                sharded_async_extra_over_shard=asyn["extra_over_shard"],
                goal_memory_async="<= 1.2 + 1 (staging copy)",
            )
        if gather is not None:
            goal["gather_extra_over_shard"] = gather["extra_over_shard"]
        goals.append(goal)
    return {
        "benchmark": "checkpoint",
        "date": _dt.date.today().isoformat(),
        "device": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), {args.backend} x {args.world} ranks",
        "cpu_model": cpu_model(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "scratch_filesystem": args.scratch,
        "repeats": args.repeats,
        "host_memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "rows": rows,
        "goals": goals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="125m,350m")
    parser.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="a subset of " + ",".join(MODES) + " (e.g. without the gather "
        "for a model whose full state does not fit one rank's memory)",
    )
    parser.add_argument("--world", type=int, default=2, help="ranks (one GPU each with nccl)")
    parser.add_argument(
        "--scratch", default=None, help="where checkpoints are written (default: a new temp folder)"
    )
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / f"cpu-{_dt.date.today().isoformat()}")
    )
    args = parser.parse_args()
    own_scratch = args.scratch is None
    args.scratch = args.scratch or tempfile.mkdtemp(prefix="normia-ckpt-bench-")
    rows_file = Path(args.scratch) / "rows.json"
    port = 29500 + os.getpid() % 1000
    try:
        mp.spawn(_rank, args=(args.world, port, args, str(rows_file)), nprocs=args.world, join=True)
        report = _report(json.loads(rows_file.read_text()), args)
    finally:
        if own_scratch:
            shutil.rmtree(args.scratch, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"## checkpoint save/resume, FSDP2 on {args.world} ranks ({report['date']})",
        "",
        f"{report['cpu_model']}; {report['device']}; torch {torch.__version__}; medians of {args.repeats}",
        "",
        "| preset | mode | GB | blocking s | total s | resume s | disk write s (same bytes) | total/disk | extra host GB (max rank) | own shard GB | extra/shard |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['preset']} | {r['mode']} | {r['checkpoint_bytes'] / 1e9:.2f} | {r['blocking_s']:.3f} | {r['total_s']:.3f} | "
            f"{r['resume_s']:.3f} | {r['disk_write_s_same_bytes']:.3f} | {r['total_over_disk']:.2f} | "
            f"{r['extra_host_bytes_max_rank'] / 1e9:.2f} | {r['own_shard_bytes_max_rank'] / 1e9:.2f} | {r['extra_over_shard']:.2f} |"
        )
    lines += ["", "Goals: " + json.dumps(report["goals"], indent=1)]
    (out / "checkpoint.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
