"""Callbacks normia always installs: RNG state and MLflow run id in checkpoints, a graceful stop on Ctrl-C,
and a final summary with throughput."""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from normia.training.loop_state import replay_iterator_draws, start_next_epoch_if_completed
from normia.training.module import count_units
from normia.training.speed import IntervalSpeed, device_peak, model_flops
from normia.training.stragglers import OwnTime, StragglerWatch, gather_hosts, gather_means

# Callbacks that code running a job in this process adds to its Trainer (normia search's pruning callback): each
# factory gets (cfg, tracker) and returns a callback or None. A registry, not a config entry: such a callback holds
# live objects (an optuna.Trial) that no config can name.
CallbackFactory = Callable[[Any, Any], "L.Callback | None"]
_EXTRA_FACTORIES: list[CallbackFactory] = []


@contextlib.contextmanager
def extra_callbacks(*factories: CallbackFactory) -> Iterator[None]:
    """Within this block, every Trainer built in this process also gets the callbacks these factories return."""
    _EXTRA_FACTORIES.extend(factories)
    try:
        yield
    finally:
        for factory in factories:
            _EXTRA_FACTORIES.remove(factory)


def added_callbacks(cfg: Any, tracker: Any) -> list[L.Callback]:
    """The callbacks of the factories registered by extra_callbacks (none outside such a block)."""
    made = (factory(cfg, tracker) for factory in list(_EXTRA_FACTORIES))
    return [callback for callback in made if callback is not None]


class CallbackGroup(L.Callback):
    """Stateless callbacks run as one. Lightning calls every hook of every callback at every step, each inside a
    profiler context named after the callback's state key, whether or not the callback defines the hook: with
    a dozen hooks a step, each callback costs ~30 us a step (issue 15). Grouped, Lightning dispatches once and
    the group calls only the members that define the hook, in the members' order. Members must keep no state in
    checkpoints (state_dict), since the group saves none."""

    def __init__(self, members: list[L.Callback]):
        for member in members:
            if type(member).state_dict is not L.Callback.state_dict:
                raise ValueError(f"{type(member).__name__} saves state: it cannot be grouped")
        self.members = list(members)
        for hook in GROUPED_HOOKS:  # instance attributes: what Lightning's getattr(callback, hook) finds
            calls = [
                getattr(m, hook)
                for m in self.members
                if getattr(type(m), hook) is not getattr(L.Callback, hook)
            ]
            if len(calls) == 1:
                setattr(self, hook, calls[0])
            elif calls:
                setattr(self, hook, _calling_all(calls))


def _calling_all(calls: list[Callable[..., Any]]) -> Callable[..., None]:
    def call_all(*args: Any, **kwargs: Any) -> None:
        for call in calls:
            call(*args, **kwargs)

    return call_all


# Every hook Lightning calls on a callback, except its checkpoint state (state_dict/load_state_dict).
GROUPED_HOOKS = tuple(
    name
    for name in vars(L.Callback)
    if callable(getattr(L.Callback, name)) and (name.startswith("on_") or name in ("setup", "teardown"))
)


class NormiaState(L.Callback):
    """Saves what Lightning does not: RNG states of every library and the MLflow run id, so a resumed run continues
    the same random stream and appends to the same MLflow run."""

    def __init__(self, tracker: Any = None, config_text: str | None = None):
        self.tracker = tracker
        self.config_text = config_text
        self.restored: dict[str, Any] = {}
        self._at_epoch_start = False

    def _run_id(self) -> str | None:
        return self.tracker.version if self.tracker is not None else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the sanity check: a job refused there (e.g. an unknown monitor) leaves no MLflow run."""
        if self.tracker is not None:
            self.tracker.begin()

    def state_dict(self) -> dict[str, Any]:
        """Every rank's RNG states (ranks may draw differently); called on all ranks when a checkpoint is made."""
        local = _rng_states()
        per_rank = [local]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            per_rank = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, local)
        return {**local, "rank_rng": per_rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Kept until training resumes: between restore and then Lightning creates data iterators and runs the
        sanity check, which draw from the global RNG; applying it then puts the stream where it was. Mid-epoch,
        that is the next batch; at an epoch boundary, the next epoch's start (whose new data iterator draws from
        the stream in an uninterrupted run too)."""
        self.restored = state

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._at_epoch_start and self.restored:
            self._apply_restored(trainer)
            replay_iterator_draws(trainer)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        self._apply_restored(trainer)

    def _apply_restored(self, trainer: L.Trainer) -> None:
        if not self.restored:
            return
        state, self.restored = self.restored, {}
        per_rank = state.get("rank_rng") or []
        _set_rng_states(per_rank[trainer.global_rank] if len(per_rank) == trainer.world_size else state)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """The config goes in too: a resume compares against what this checkpoint was really trained with."""
        checkpoint["normia"] = {"mlflow_run_id": self._run_id(), "config": self.config_text}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Say what a checkpoint not written by normia train cannot give back, instead of resuming silently."""
        self._at_epoch_start = start_next_epoch_if_completed(checkpoint)
        lost = missing_state(checkpoint, trainer.datamodule)
        if lost and trainer.is_global_zero:
            print(f"warning: this checkpoint lacks {'; '.join(lost)}", flush=True)


def missing_state(checkpoint: dict, datamodule: Any = None) -> list[str]:
    """What a resume from this checkpoint cannot restore (empty for a checkpoint written by normia train)."""
    lost = []
    keeps_position = (
        datamodule is not None and type(datamodule).state_dict is not L.LightningDataModule.state_dict
    )
    if keeps_position and type(datamodule).__qualname__ not in checkpoint:
        lost.append("normia's data position: the interrupted epoch starts again from its first batch")
    if "NormiaState" not in (checkpoint.get("callbacks") or {}):
        lost.append(
            "normia's random-number state: data order and dropout will differ from an uninterrupted run"
        )
    if "normia" not in checkpoint:
        lost.append("the MLflow run id: the resumed training is recorded as a new MLflow run")
    if "loops" not in checkpoint:
        lost.append("the position in the data: training restarts at epoch 0, batch 0")
    return lost


def _rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python_rng": _to_lists(random.getstate()),
    }


def _set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    kind, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python_rng"]))


def _to_lists(obj: Any) -> Any:
    return [_to_lists(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, list) else obj


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest value any rank holds (one small all_reduce), so that every rank takes the same decision at the
    same step; the value itself outside a process group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = torch.tensor([value], dtype=torch.int32, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())
    return value


class StopRequested(Exception):
    """Raised on every rank at the step where a requested stop was agreed; run_training turns it into exit 130."""


class GracefulStop(L.Callback):
    """The first Ctrl-C (SIGINT), or SIGTERM where `signals` has it, asks to stop: at the next step boundary every
    rank agrees, training ends and a checkpoint is written (waiting for any write in flight), so the run can be
    resumed; the run then exits 130 (SIGINT) or 143 (SIGTERM). A second signal interrupts at once.

    Handlers are (re)installed at train start too: Lightning installs its own SIGTERM handler between fit start and
    the first batch, which would end the run without a checkpoint."""

    def __init__(self, saver: Any = None, tracker: Any = None, signals: tuple[int, ...] = (signal.SIGINT,)):
        self.saver = saver  # PeriodicCheckpoint (its save() writes step-N.ckpt and points last.ckpt at it)
        self.tracker = tracker
        self.signals = signals
        self.requested = False
        self.stopped = False
        self.signal: int = signal.SIGINT
        self._previous: dict[int, Any] = {}

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal)

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum
        print(
            f"\nstop requested ({signal.Signals(signum).name}): finishing this step and saving a checkpoint "
            "(Ctrl-C again to abort)",
            flush=True,
        )

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                previous = signal.signal(sig, self._handler)
                self._previous.setdefault(sig, previous)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # The signal number travels in the agreed value: every rank exits with the same code.
        agreed = max_over_ranks(int(self.signal) if self.requested else 0, pl_module.device)
        if agreed:
            self.stopped = True
            self.signal = agreed
            flush_step_metrics(trainer)
            # Every rank is here (the flag was agreed on), so a collective save is safe. The save comes first: a
            # loss found non-finite there (NonFiniteLoss checks before any save) fails the run instead.
            if self.saver is not None:
                self.saver.save(trainer, wait=True)
            if self.tracker is not None:
                self.tracker.final_status = "KILLED"  # resumable, not failed
            # Not trainer.should_stop: Lightning would then validate, close the epoch and save again, and the
            # resumed run would skip the rest of this epoch's data.
            raise StopRequested(trainer.global_step)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.on_fit_end(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def _peak_memory_gb(device: Any) -> float | None:
    """Peak allocated memory of this rank's GPU since the start, in GB (allocator statistics: no sync). Not reset:
    other readers (the GPU script's probe) read the same counter."""
    if getattr(device, "type", "cpu") != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1e9


def flush_step_metrics(trainer: L.Trainer) -> None:
    """Send this step's train/* values and every logger's buffer now. Lightning sends a step's values only after
    on_train_batch_end, which a stop (Ctrl-C, preemption) leaves by raising: without this call, made from
    on_train_batch_end before raising, each stop loses the point of the interrupted step."""
    connector = trainer._logger_connector  # private: guarded by tests/test_private_apis.py, so never silent
    connector.on_batch_end()
    connector.update_train_step_metrics()
    for logger in trainer.loggers:
        flush = getattr(logger, "flush", None)  # normia's tracker buffers in save(); flush() sends now
        if callable(flush):
            flush()
        else:
            logger.save()


class Throughput(L.Callback):
    """Counts samples/tokens and wall time of training steps (validation excluded) for the final summary, and logs
    speed/* (tokens/s, step time, time between steps, TFLOP/s and MFU per device, peak memory) at every logging step
    (normia.training.speed: clock reads only, no host-device sync)."""

    def __init__(self) -> None:
        self.samples = 0
        self.tokens = 0
        self.train_time = 0.0
        self.steps = 0
        self._t0: float | None = None
        self.fit_start = time.perf_counter()
        self.interval: IntervalSpeed | None = None
        self.own = OwnTime()  # this rank's time between steps, for straggler detection
        self.stragglers = StragglerWatch()
        self.hosts: list[str] | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        self._t0 = time.perf_counter()
        if self.interval is None:
            samples, tokens = count_units(batch)
            self.interval = IntervalSpeed(
                trainer.world_size,
                model_flops(getattr(pl_module, "model", pl_module), tokens, samples),
                device_peak(pl_module.device),
            )
        self.interval.batch_start(self._t0)
        self.own.step_starts(self._t0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self._t0 is None:
            return
        now = time.perf_counter()
        self.train_time += now - self._t0
        samples, tokens = count_units(batch)
        self.samples += samples * trainer.world_size
        self.tokens += tokens * trainer.world_size
        self.steps += 1
        if self.interval is None:
            return
        self.interval.batch_end(now, samples, tokens)
        every = int(trainer.log_every_n_steps or 0)
        if not every or trainer.global_step % every != 0:
            self.own.step_ends(now)
            return
        metrics = self.interval.take(now, _peak_memory_gb(pl_module.device))
        for logger in trainer.loggers if metrics else []:
            logger.log_metrics(metrics, trainer.global_step)
        self._check_stragglers(trainer, pl_module)  # every rank: a collective
        self.own.step_ends(time.perf_counter())  # the gather waits for the others: not this rank's own time

    def _check_stragglers(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        means = gather_means(trainer, pl_module.device, self.own.take())
        if means is None:
            return
        if self.hosts is None:
            self.hosts = gather_hosts(trainer)
        for line in self.stragglers.judge(means, self.hosts):
            if trainer.global_rank != 0:
                continue
            print(f"warning: {line}", file=sys.stderr, flush=True)
            for logger in trainer.loggers:
                client, run_id = getattr(logger, "experiment", None), getattr(logger, "version", None)
                if client is not None and run_id and hasattr(client, "set_tag"):
                    client.set_tag(run_id, "normia.straggler", line[:5000])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Into the tracker while its run is still open (Lightning closes it right after this hook)."""
        rates = self.rates()
        for logger in trainer.loggers if rates else []:
            logger.log_metrics({f"summary/{k}": v for k, v in rates.items()}, trainer.global_step)

    def speed(self) -> dict[str, Any]:
        """MFU and TFLOP/s per device over the run (median of the logging intervals after the first), or why not."""
        out = self.interval.summary() if self.interval is not None else {}
        if self.stragglers.sums:
            out["own_step_s_by_host"] = self.stragglers.per_host()
        return out

    def rates(self) -> dict[str, float]:
        if self.train_time <= 0:
            return {}
        out = {"samples_per_s": self.samples / self.train_time, "steps_per_s": self.steps / self.train_time}
        if self.tokens:
            out["tokens_per_s"] = self.tokens / self.train_time
        return out
