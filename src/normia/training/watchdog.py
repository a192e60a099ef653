"""A hung rank ends the job quickly and is named, instead of every rank waiting 30 minutes in a collective.

Each rank runs a daemon thread that watches the training loop's progress (Lightning hooks: batch start, backward,
batch end, validation batches, checkpoint saves). When no progress is seen for the limit, the thread:
1. writes `<output_dir>/hang/rank-<r>.txt`: one JSON line (rank, host, pid, progress count, last phase, seconds
   waited) then every thread's Python stack (faulthandler), on every rank that can still run Python;
2. waits a few seconds for the other ranks' files, then names the culprits: the ranks whose loop got least far
   (ranks move through the same hooks in lockstep, so the one behind is the one the others wait for), and the
   ranks that wrote nothing (a process frozen outside Python);
3. the lowest rank that answered writes `<output_dir>/hang.json`, prints one `error:` line, and (rank 0, which owns
   the MLflow run) marks the run FAILED with the message in the tag `normia.failure`. When the culprits are some
   ranks (not all: a stall shared by every rank is data or a file system, not a node) and `on_hang` is set (Slurm
   jobs: normia.launch.preemption), it is called with their nodes first; if it requeued the job away from them, the
   run is KILLED instead (it goes on after the requeue) with the tags `normia.requeued_after` and
   `normia.excluded_nodes`;
4. every rank exits with HANG_EXIT_CODE (124, as `timeout` does) through os._exit: a thread cannot unblock a
   collective, and Python's normal exit would wait for it.

The limit is `trainer.hang_first_timeout_s` until two steps have completed (compilation, data start-up) and during
slow phases (a checkpoint being written, an epoch's data loaders starting), then max(`trainer.hang_timeout_s`,
STEP_FACTOR x the median step time) - torchtitan likewise shortens its collective timeout after the first step
(torchtitan/distributed/utils.py, `comm.train_timeout_seconds`). The hooks only read the clock: no host-device sync.
"""

from __future__ import annotations

import faulthandler
import json
import os
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from normia.node import node_name, nodes_of_ranks

HANG_EXIT_CODE = 124
STEP_FACTOR = 20.0  # a step 20x slower than the median is not a slow step, it is a hang
GATHER_S = 8.0  # how long a rank waits for the others' stack files before naming the culprits
LEADER_WAIT_S = (
    90.0  # how long the other ranks wait for the leader's hang.json (its scontrol calls: 10 s at most each)
)
HANG_DIR = "hang"
SUMMARY = "hang.json"
# torch's flight recorder: the last collectives of each process group (name, sizes, state: scheduled, started,
# completed), kept by c10d when TORCH_FR_BUFFER_SIZE > 0 (normia sets FLIGHT_RECORDER_ENTRIES for multi-rank runs, as
# torchtitan does with comm.trace_buf_size). Dumped on a hang, one file per rank, in the layout torch's analyser reads:
# `python -m torch.distributed.flight_recorder.fr_trace <run>/hang/flight_recorder` names the collective a rank missed.
FLIGHT_RECORDER_DIR = "flight_recorder"
FLIGHT_RECORDER_ENTRIES = 2000


class HangWatchdog(L.Callback):
    """Ends the process (exit 124) when the training loop makes no progress for the limit; see the module doc.

    Args:
        output_dir: the run folder (stack files and hang.json go there; shared by every rank of a Slurm job).
        timeout_s: floor of the limit after the first steps, in seconds.
        first_timeout_s: the limit before two steps completed and during slow phases, in seconds.
        tracker: the MLflow logger (rank 0's), marked FAILED on a hang; None without MLflow.

    Attributes:
        on_hang: called by the leading rank with the culprits' nodes and the error line when the hang is pinned on
            some ranks; returns a sentence when it requeued the job away from those nodes, else None.
    """

    def __init__(self, output_dir: str, timeout_s: float, first_timeout_s: float, tracker: Any = None):
        self.output_dir = Path(output_dir)
        self.timeout_s = float(timeout_s)
        self.first_timeout_s = float(first_timeout_s)
        self.tracker = tracker
        self.progress = 0  # hooks passed; ranks pass the same hooks in the same order
        self.phase = "starting"
        self.slow = True
        self.last = time.monotonic()
        self.steps_done = 0
        self.step_times: deque[float] = deque(maxlen=50)
        self._step_start: float | None = None
        self._rank = 0
        self._world = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nodes: list[str] = []  # node of each rank, to name a rank that writes no report
        self.on_hang: Callable[[list[str], str], str | None] | None = None

    # -- progress, from the training loop's thread: clock reads and assignments only --------------------------
    def mark(self, phase: str, slow: bool = False) -> None:
        self.progress += 1
        self.phase = phase
        self.slow = slow
        self.last = time.monotonic()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self._thread is not None:
            return
        self._rank, self._world = trainer.global_rank, trainer.world_size
        self._nodes = nodes_of_ranks(self._world)
        self.mark("setting up the fit", slow=True)
        self._thread = threading.Thread(target=self._watch, name="normia-hang-watchdog", daemon=True)
        self._thread.start()

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"epoch {trainer.current_epoch}: starting its data loaders", slow=True)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._step_start = time.monotonic()
        self.mark(f"step {trainer.global_step}: forward")

    def on_before_backward(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"step {trainer.global_step}: backward (gradients all-reduced across ranks)")

    def on_before_optimizer_step(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"step {trainer.global_step}: optimizer step")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._step_start is not None:
            self.step_times.append(time.monotonic() - self._step_start)
        self.steps_done += 1
        self.mark(f"step {trainer.global_step}: after the step (callbacks, logging)")

    def on_validation_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"validation at step {trainer.global_step}: starting", slow=True)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"validation at step {trainer.global_step}")

    def on_validation_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"validation at step {trainer.global_step}: done (metrics reduced across ranks)")

    def on_save_checkpoint(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark(f"step {trainer.global_step}: writing a checkpoint", slow=True)

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.mark("end of training: final checkpoint", slow=True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop.set()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._stop.set()

    # -- the watching thread ----------------------------------------------------------------------------------
    def limit_s(self) -> float:
        """Seconds without progress that count as a hang, now."""
        if self.slow or self.steps_done < 2 or not self.step_times:
            return self.first_timeout_s
        return max(self.timeout_s, STEP_FACTOR * statistics.median(self.step_times))

    def _watch(self) -> None:
        poll = min(1.0, max(0.05, self.timeout_s / 20))
        while not self._stop.wait(poll):
            waited = time.monotonic() - self.last
            if waited > self.limit_s():
                self._fire(waited)
                return

    def _fire(self, waited: float) -> None:
        folder = self.output_dir / HANG_DIR
        folder.mkdir(parents=True, exist_ok=True)
        me = {
            "rank": self._rank,
            "host": node_name(),
            "pid": os.getpid(),
            "progress": self.progress,
            "phase": self.phase,
            "waited_s": round(waited, 1),
            "limit_s": round(self.limit_s(), 1),
            **main_thread_position(),
        }
        write_stacks(folder / f"rank-{self._rank}.txt", me)
        dump_flight_recorder(folder / FLIGHT_RECORDER_DIR, self._rank)
        reports = gather(folder, self._world, me, GATHER_S)
        leader = min(r["rank"] for r in reports)
        if self._rank == leader:
            guilty = culprits(reports, self._world, self._nodes)
            message = describe(reports, self._world, folder, self._nodes)
            nodes = blamed_nodes(guilty, self._world, self._nodes)
            requeued = None
            if nodes and self.on_hang is not None:
                try:
                    requeued = self.on_hang(nodes, message)
                except Exception as err:  # the hang must still end, named, on every rank
                    print(f"warning: the requeue after the hang failed: {err}", file=sys.stderr, flush=True)
            if requeued:
                message = f"{message}; {requeued}"
            summary = {"message": message, "culprits": guilty, "requeued": requeued, "reports": reports}
            tmp = self.output_dir / f".{SUMMARY}.{os.getpid()}"
            tmp.write_text(json.dumps(summary, indent=1))
            print(f"error: {message}", file=sys.stderr, flush=True)
            if self._rank == 0:
                mark_failed(self.tracker, message, nodes if requeued else None)
            # Published last: the other ranks exit when they see it, and srun then ends this one.
            tmp.replace(self.output_dir / SUMMARY)
        else:
            # The leader requeues (a few scontrol calls) and writes MLflow's status: do not pull it down early (srun
            # ends every task when one exits with an error).
            deadline = time.monotonic() + LEADER_WAIT_S
            while not (self.output_dir / SUMMARY).exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        sys.stderr.flush()
        os._exit(HANG_EXIT_CODE)


def main_thread_position() -> dict[str, Any]:
    """Where the training loop's thread is now: its innermost frame, and whether it is inside torch.distributed
    (waiting in a collective) - which tells a rank that waits from the rank it waits for."""
    frame = sys._current_frames().get(threading.main_thread().ident or -1)
    where, in_collective = "unknown", False
    if frame is not None:
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"
        walk: Any = frame
        while walk is not None:
            name = walk.f_code.co_filename.replace(os.sep, "/")
            in_collective = in_collective or "/torch/distributed/" in name
            walk = walk.f_back
    return {"where": where, "in_collective": in_collective}


def write_stacks(path: Path, header: dict[str, Any]) -> None:
    """One JSON line, then every thread's Python stack; made visible whole (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(header) + "\n")
        handle.flush()
        faulthandler.dump_traceback(file=handle, all_threads=True)
    tmp.replace(path)


def enable_flight_recorder(world: int) -> None:
    """Keep c10d's record of recent collectives in a multi-rank run (before the process group is made); a value the
    user set wins."""
    if world > 1 and not os.environ.get("TORCH_NCCL_TRACE_BUFFER_SIZE"):
        os.environ.setdefault("TORCH_FR_BUFFER_SIZE", str(FLIGHT_RECORDER_ENTRIES))


def dump_flight_recorder(folder: Path, rank: int) -> Path | None:
    """This rank's flight recorder (c10d's pickle: NCCL on GPUs, gloo on CPUs) as <folder>/rank_<rank>; None when
    there is no process group or nothing recorded. Never raises: the hang must end."""
    try:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        import torch._C._distributed_c10d as c10d

        # NCCL keeps its own recorder in CUDA builds (_dump_nccl_trace); gloo and newer builds the general one.
        nccl = dist.get_backend() == "nccl" and hasattr(c10d, "_dump_nccl_trace")
        data = c10d._dump_nccl_trace() if nccl else c10d._dump_fr_trace()
        if not data:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"rank_{rank}"
        path.write_bytes(data)
        return path
    except Exception as err:  # a record, not the exit
        print(f"warning: no flight-recorder dump on rank {rank}: {err}", file=sys.stderr)
        return None


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            return json.loads(handle.readline())
    except (OSError, ValueError):
        return None


def gather(folder: Path, world: int, mine: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """The reports of every rank that wrote one within `seconds` (this rank's included)."""
    deadline = time.monotonic() + seconds
    while True:
        reports = [r for r in (read_report(folder / f"rank-{k}.txt") for k in range(world)) if r is not None]
        if len(reports) >= world or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not any(r["rank"] == mine["rank"] for r in reports):
        reports.append(mine)
    return sorted(reports, key=lambda r: r["rank"])


def blamed_nodes(guilty: list[dict[str, Any]], world: int, nodes: list[str] | None = None) -> list[str]:
    """The nodes a hang is pinned on: those of the culprits when they are some ranks, not all of them (a stall
    shared by every rank, or the only rank's, may be data or a file system: moving the job would not help), and, in a
    job of several nodes (`nodes`: every rank's node), not every node (e.g. the same local rank on each: the code)."""
    if len(guilty) >= world:
        return []
    blamed = sorted({str(c["host"]) for c in guilty if c.get("host")})
    every = set(nodes or [])
    if len(every) > 1 and set(blamed) >= every:
        return []
    return blamed


def culprits(
    reports: list[dict[str, Any]], world: int, nodes: list[str] | None = None
) -> list[dict[str, Any]]:
    """The ranks the others wait for: those that wrote no report, else those whose loop got least far. A rank
    without a report is placed on its node from `nodes` (every rank's node, by rank) when known."""
    seen = {r["rank"] for r in reports}
    known = nodes or []
    silent = [{"rank": k, "host": known[k] if k < len(known) else None,
               "phase": "no report: frozen outside Python or gone"} for k in range(world)
              if k not in seen]  # fmt: skip
    if silent:
        return silent
    least = min(r["progress"] for r in reports)
    behind = [r for r in reports if r["progress"] == least]
    # At the same point, a rank blocked inside a collective waits for one that is not.
    outside = [r for r in behind if not r.get("in_collective")]
    return outside if outside and len(outside) < len(behind) else behind


def describe(reports: list[dict[str, Any]], world: int, folder: Path, nodes: list[str] | None = None) -> str:
    """The one-line error: who, where, for how long, and where the stacks are."""
    waited = max(r["waited_s"] for r in reports)
    guilty = culprits(reports, world, nodes)

    def who(c: dict[str, Any]) -> str:
        pid = f" (pid {c['pid']})" if c.get("pid") else ""
        host = f" on {c['host']}{pid}" if c.get("host") else ""
        where = f", in {c['where']}" if c.get("where") else ""
        return f"rank {c['rank']}{host} did not arrive (it was at {c['phase']}{where})"

    if len(guilty) == world and world > 1:
        what = (
            f"every rank stopped at the same point ({guilty[0]['phase']}): a stall shared by all, e.g. data"
        )
    elif len(guilty) == world:
        what = f"no progress at {guilty[0]['phase']}" + (
            f", in {guilty[0]['where']}" if guilty[0].get("where") else ""
        )
    else:
        what = "; ".join(who(c) for c in guilty) + "; the other ranks waited for it"
    return (
        f"training hung: {what}; no progress for {waited:.0f} s (limit {reports[0]['limit_s']:.0f} s, "
        f"trainer.hang_timeout_s); every rank's Python stacks are in {folder}; exit {HANG_EXIT_CODE}"
    )


def mark_failed(tracker: Any, message: str, excluded: list[str] | None = None) -> None:
    """Rank 0's MLflow run: FAILED, with the message as the tag normia.failure; or, when the job was requeued away
    from `excluded` nodes, KILLED (the requeued job reopens it) with the tags normia.requeued_after and
    normia.excluded_nodes. Best effort: a hang must end."""
    run_id = getattr(tracker, "version", None)
    if tracker is None or not run_id:
        return
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracker.tracking_uri)
        if excluded:
            before = client.get_run(run_id).data.tags.get("normia.excluded_nodes", "")
            nodes = sorted({*before.split(","), *excluded} - {""})
            client.set_tag(run_id, "normia.requeued_after", message[:5000])
            client.set_tag(run_id, "normia.excluded_nodes", ",".join(nodes))
            client.set_terminated(run_id, status="KILLED")
            return
        client.set_tag(run_id, "normia.failure", message[:5000])
        client.set_terminated(run_id, status="FAILED")
    except Exception as err:  # the store may be what hangs; say so, and still end
        print(f"warning: could not mark MLflow run {run_id} FAILED: {err}", file=sys.stderr)
