"""Pre-flight check of a job's nodes (issue 23): each rank's device, then the network between the ranks, before data
or model are loaded, so a bad node costs seconds and is named instead of hanging or slowing the whole run.

1. Device, on every rank: free memory of its GPU; through NVML (nvidia-ml-py, when installed) uncorrected ECC errors,
   pages pending retirement, failed row remapping and hardware/thermal slowdown; no GPU: nothing to check.
2. All-reduce bus bandwidth at a few sizes (nccl-tests' definition, PERFORMANCE.md: busbw = bytes x 2(n-1)/n / time),
   the largest compared with the partition's floor (launcher.partitions.<name>.min_busbw_gbps; judged only with NCCL:
   gloo on CPUs is measured, not judged).
3. Every pair of ranks exchanges a buffer both ways, in n-1 rounds of disjoint pairs (the circle method of round-robin
   tournaments); a rank whose median pair bandwidth is more than `slow_factor` below the median of all ranks is
   flagged. This is relative, so it is judged on any backend: a slow link or an overloaded node shows there.

Every rank gets the whole table (one all-gather), so all agree on the verdict without another message.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist

MiB = 1 << 20
ALLREDUCE_SIZES = (MiB, 8 * MiB, 32 * MiB)  # bytes, float32 buffers
PAIR_SIZE = 8 * MiB
ITERATIONS = 3
MIN_FREE_MEMORY_FRACTION = 0.9  # a GPU with less free memory than this runs someone else's process


@dataclass
class RankReport:
    """One rank's findings. Bandwidths in GB/s (1e9 bytes per second), times in seconds."""

    rank: int
    node: str
    device: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pair_gbps: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankReport:
        """From asdict() or its JSON (where the partner ranks became strings)."""
        return cls(**{**data, "pair_gbps": {int(k): float(v) for k, v in data["pair_gbps"].items()}})


@dataclass
class Verdict:
    """The whole check: what every rank found, the all-reduce figures, and the nodes that failed (with why)."""

    world_size: int
    backend: str
    seconds: float
    allreduce: list[dict[str, float]]
    ranks: list[RankReport]
    failed: dict[str, list[str]]
    floor_gbps: float | None
    judged_floor: bool
    group: list[str] = field(default_factory=list)  # problems of the whole group (the floor): no node named

    def lines(self) -> list[str]:
        """The table as text: all-reduce per size, each rank's median pair bandwidth and problems."""
        out = [
            f"pre-flight: {self.world_size} ranks, {self.backend}, {self.seconds:.1f} s"
            + (f", floor {self.floor_gbps:g} GB/s" if self.floor_gbps else "")
            + ("" if self.judged_floor or not self.floor_gbps else " (not judged on this backend)")
        ]
        for row in self.allreduce:
            out.append(
                f"  all-reduce {row['bytes'] / MiB:>5.0f} MiB: {row['seconds'] * 1e3:8.2f} ms, busbw {row['busbw_gbps']:.2f} GB/s"
            )
        for report in self.ranks:
            pairs = median_pair(report)
            pair = f"{pairs:.2f} GB/s" if pairs is not None else "-"
            issues = "; ".join(report.problems) or "ok"
            out.append(f"  rank {report.rank} on {report.node} ({report.device}): pairs {pair}; {issues}")
        for node, why in sorted(self.failed.items()):
            out.append(f"FAILED {node}: {'; '.join(why)}")
        out.extend(f"FAILED (all nodes): {why}" for why in self.group)
        return out

    def summary(self) -> str:
        """One line: passed/failed, time, the largest all-reduce's bus bandwidth, the slowest rank's pairs."""
        pairs = [m for m in (median_pair(r) for r in self.ranks) if m is not None]
        busbw = f", all-reduce busbw {self.allreduce[-1]['busbw_gbps']:.2f} GB/s" if self.allreduce else ""
        slowest = f", slowest pairs {min(pairs):.2f} GB/s" if pairs else ""
        verdict = f"failed on {', '.join(sorted(self.failed))}" if self.failed else "passed"
        verdict = "failed: under the bus-bandwidth floor" if self.group and not self.failed else verdict
        return (
            f"{verdict} in {self.seconds:.1f} s over {self.world_size} ranks ({self.backend}){busbw}{slowest}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        data = json.loads(text)
        return cls(**{**data, "ranks": [RankReport.from_dict(r) for r in data["ranks"]]})


def median_pair(report: RankReport) -> float | None:
    values = list(report.pair_gbps.values())
    return statistics.median(values) if values else None


def device_report(rank: int, node: str) -> RankReport:
    """This rank's device: free memory, and NVML's health counters when nvidia-ml-py is installed. A GPU that fails
    to answer is a problem of this rank's node, not an exception."""
    try:
        return _device_report(rank, node)
    except Exception as err:
        return RankReport(
            rank, node, "cuda", problems=[f"the GPU failed to answer: {' '.join(str(err).split())[:200]}"]
        )


def _device_report(rank: int, node: str) -> RankReport:
    if not torch.cuda.is_available():
        return RankReport(rank, node, "cpu", notes=["no GPU: device checks skipped"])
    index = torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    report = RankReport(rank, node, f"cuda:{index} {name}")
    free, total = torch.cuda.mem_get_info(index)
    if free < MIN_FREE_MEMORY_FRACTION * total:
        report.problems.append(
            f"GPU {index} has {free / 2**30:.1f} of {total / 2**30:.1f} GiB free: another process is using it"
        )
    if torch.version.hip:
        report.notes.append("AMD GPU: ECC and throttle counters not read (amdsmi not wired yet)")
        return report
    report.problems.extend(nvml_problems(index, report.notes))
    return report


def nvml_problems(index: int, notes: list[str]) -> list[str]:
    """Uncorrected ECC errors, retired pages pending, failed row remapping, hardware or thermal slowdown (NVML).
    NVML through nvidia-ml-py, NVIDIA's own binding (a maintained library, not our ctypes). Missing: a note."""
    try:
        import pynvml
    except ImportError:
        notes.append("NVML counters not read: pip install nvidia-ml-py")
        return []
    problems: list[str] = []
    try:
        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, index)
        checks: list[tuple[str, Callable[[], Any]]] = [
            ("uncorrected ECC errors", lambda: pynvml.nvmlDeviceGetTotalEccErrors(
                handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)),
            ("pages pending retirement", lambda: pynvml.nvmlDeviceGetRetiredPagesPendingStatus(handle)),
            ("row remapping failed", lambda: pynvml.nvmlDeviceGetRemappedRows(handle)[3]),
        ]  # fmt: skip
        for what, read in checks:
            try:
                value = int(read())
            except pynvml.NVMLError:
                continue  # not supported on this GPU
            if value:
                problems.append(f"{what}: {value}")
        try:
            reasons = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
            slow = reasons & (
                pynvml.nvmlClocksThrottleReasonHwSlowdown | pynvml.nvmlClocksThrottleReasonHwThermalSlowdown
            )
            if slow:
                problems.append(f"clocks held down by the hardware (throttle reasons 0x{reasons:x})")
        except (pynvml.NVMLError, AttributeError):
            pass
    except pynvml.NVMLError as err:
        notes.append(f"NVML unavailable: {err}")
    return problems


def _nvml_handle(pynvml: Any, index: int) -> Any:
    """NVML's handle of CUDA device `index`, found by its UUID: NVML numbers GPUs in PCI order and ignores
    CUDA_VISIBLE_DEVICES (which may hold UUIDs), so CUDA's index is not NVML's. Falls back on the index when this
    torch build does not expose the UUID."""
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(
                uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            )
        except pynvml.NVMLError:
            pass
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    nvml_index = int(visible[index]) if index < len(visible) and visible[index].isdigit() else index
    return pynvml.nvmlDeviceGetHandleByIndex(nvml_index)


def allreduce_figures(
    device: torch.device, sizes: tuple[int, ...] = ALLREDUCE_SIZES
) -> list[dict[str, float]]:
    """Median time and bus bandwidth of an all-reduce of each size (bytes) over the default group."""
    world = dist.get_world_size()
    rows = []
    for size in sizes:
        buffer = torch.ones(size // 4, dtype=torch.float32, device=device)
        dist.all_reduce(buffer)  # warm-up: the first call sets up connections
        times = []
        for _ in range(ITERATIONS):
            _sync(device)
            start = time.perf_counter()
            dist.all_reduce(buffer)
            _sync(device)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        busbw = size * 2 * (world - 1) / world / seconds / 1e9
        rows.append({"bytes": float(size), "seconds": seconds, "busbw_gbps": busbw})
    return rows


Exchange = Callable[[int, torch.Tensor, torch.Tensor], None]


def exchange(partner: int, send: torch.Tensor, receive: torch.Tensor) -> None:
    """Send `send` to `partner` and receive its buffer, at the same time. One batched call: with NCCL, two ranks that
    both post a large isend before their irecv can block each other (NVIDIA/nccl#479); batch_isend_irecv groups them."""
    ops = [dist.P2POp(dist.isend, send, partner), dist.P2POp(dist.irecv, receive, partner)]
    for request in dist.batch_isend_irecv(ops):
        request.wait()


def round_robin(world: int) -> list[list[tuple[int, int]]]:
    """Rounds of disjoint pairs covering every pair once (circle method); an odd world gets a bye each round."""
    players: list[int | None] = list(range(world)) + ([None] if world % 2 else [])
    count = len(players)
    rounds = []
    for _ in range(count - 1):
        pairs = [(players[i], players[count - 1 - i]) for i in range(count // 2)]
        rounds.append([(a, b) for a, b in pairs if a is not None and b is not None])
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def pair_figures(
    device: torch.device, do_exchange: Exchange = exchange, size: int = PAIR_SIZE
) -> dict[int, float]:
    """This rank's bandwidth (GB/s, bytes both ways over the time) with every other rank, one round at a time."""
    rank = dist.get_rank()
    send = torch.ones(size // 4, dtype=torch.float32, device=device)
    receive = torch.empty_like(send)
    figures: dict[int, float] = {}
    for pairs in round_robin(dist.get_world_size()):
        partner = next((b if a == rank else a for a, b in pairs if rank in (a, b)), None)
        if partner is not None:
            do_exchange(partner, send, receive)  # warm-up
            _sync(device)
            start = time.perf_counter()
            do_exchange(partner, send, receive)
            _sync(device)
            figures[partner] = 2 * size / (time.perf_counter() - start) / 1e9
        dist.barrier()  # one round at a time: pairs of the next round share these ranks
    return figures


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def judge(ranks: list[RankReport], slow_factor: float) -> dict[str, list[str]]:
    """Failed nodes -> reasons: a device problem; a rank's median pair bandwidth `slow_factor` below the median of all
    ranks. (The floor is judged apart, by group_problems: a whole-group figure names no node.)"""
    failed: dict[str, list[str]] = {}
    for report in ranks:
        for problem in report.problems:
            failed.setdefault(report.node, []).append(f"rank {report.rank}: {problem}")
    medians = {r.rank: median_pair(r) for r in ranks}
    known = [m for m in medians.values() if m]
    if len(known) >= 3:  # with two ranks there is one pair: nothing to single out
        typical = statistics.median(known)
        for report in ranks:
            mine = medians[report.rank]
            if mine is not None and mine * slow_factor < typical:
                failed.setdefault(report.node, []).append(
                    f"rank {report.rank}: pair bandwidth {mine:.2f} GB/s, {typical / mine:.1f}x below the median "
                    f"{typical:.2f} GB/s (launcher.preflight_slow_factor={slow_factor:g})"
                )
    return failed


def group_problems(
    world: int, allreduce: list[dict[str, float]], floor_gbps: float | None, judge_floor: bool
) -> list[str]:
    """With NCCL and a floor, the largest all-reduce under it: a figure of the whole group, which names no node (the
    job stops rather than excluding every node). One rank moves no bytes: nothing to judge."""
    if not (floor_gbps and judge_floor and allreduce and world > 1):
        return []
    biggest = allreduce[-1]
    if biggest["busbw_gbps"] >= floor_gbps:
        return []
    return [
        f"all-reduce bus bandwidth {biggest['busbw_gbps']:.1f} GB/s at {biggest['bytes'] / MiB:.0f} MiB is under the "
        f"partition's floor {floor_gbps:g} GB/s (launcher.partitions.<name>.min_busbw_gbps)"
    ]


def check_nodes(
    node: str,
    floor_gbps: float | None = None,
    slow_factor: float = 3.0,
    do_exchange: Exchange = exchange,
) -> Verdict:
    """Run the three checks on the initialised default group; every rank returns the same Verdict."""
    started = time.perf_counter()
    rank, world = dist.get_rank(), dist.get_world_size()
    backend = str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    mine = device_report(rank, node)
    allreduce = allreduce_figures(device)
    mine.pair_gbps = pair_figures(device, do_exchange)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, asdict(mine))
    ranks = [
        RankReport(**{**r, "pair_gbps": {int(k): v for k, v in r["pair_gbps"].items()}}) for r in gathered
    ]
    judge_floor = backend == "nccl"
    failed = judge(ranks, slow_factor)
    group = group_problems(world, allreduce, floor_gbps, judge_floor)
    seconds = time.perf_counter() - started
    return Verdict(world, backend, seconds, allreduce, ranks, failed, floor_gbps, judge_floor, group)
