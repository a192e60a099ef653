"""`normia bench train`: a plain PyTorch training loop (no Lightning, so it runs on a bare GPU machine) over a sweep
of LLaMA-style sizes. Reports tokens/s, step time, peak memory, MFU from the model's own FLOPs per token over the
device's bf16 dense peak (none for a device not in the table), the fraction of the matmul rate measured in the same
run, and the energy of the timed steps where a hardware counter is readable (normia.energy.counters: the GPU's own
NVML/amdsmi counter, RAPL on a CPU run): J/token and tokens per kWh beside tokens/s, and Wh per million tokens.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from normia.bench import device as devinfo
from normia.bench.energy import EnergyMeter, j_per_unit, open_meter, tokens_per_kwh, wh_per_million
from normia.bench.limits import bf16_peak_flops, measure_limits, mfu
from normia.bench.memory import is_out_of_memory, peak_bytes
from normia.bench.model_sizes import SIZES, build_llama
from normia.bench.plots import figure, save
from normia.bench.providers import ops_backend
from normia.bench.results import ResultsWriter
from normia.bench.timing import Timing
from normia.errors import UserError

COLUMNS = (
    "model", "params", "batch", "seq_len", "dtype", "compile", "float8", "kernels", "status", "step_ms",
    "step_p20_ms", "step_p80_ms", "tokens_per_s", "j_per_token", "tokens_per_kwh", "model_tflops", "mfu", "pct_of_matmul",
    "peak_mem_gb", "syncs_per_step", "wh_per_mtok", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class TrainBenchConfig:
    sizes: Sequence[str]
    batch_size: int | None
    seq_len: int | None
    steps: int
    warmup: int
    compile: Sequence[bool | str]  # one row per size and mode: False, True (the whole loss) or "blocks"
    kernels_backend: str  # auto, torch or triton
    activation_checkpointing: bool
    dtype: torch.dtype
    device: torch.device
    out_dir: Path
    time_budget_s: float | None = None
    plots: bool = True
    name: str = "train"  # results file base name: <out_dir>/<name>.json, .csv, .md
    float8: Sequence[bool] = (False,)  # one row per mode: bf16 only, float8 only (torchao) or both
    sync_steps: int = 3  # steady-state steps over which host-device syncs are counted (CUDA only)


class TrainStep:
    """One optimizer step of `model.loss` on a batch: forward under autocast, backward, AdamW, zero_grad."""

    def __init__(
        self, model: nn.Module, dtype: torch.dtype, device: torch.device, compile: bool | str
    ) -> None:
        """compile: False, True (torch.compile of the whole loss) or "blocks" (each of model.layers compiled in
        place: the repeated blocks share one compiled graph, so compiling a 16-layer model costs about one layer)."""
        self.model = model
        self.device = device
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
        if compile == "blocks":
            for layer in getattr(model, "layers", ()):
                layer.compile()
        self.loss_fn: Callable = torch.compile(model.loss) if compile is True else model.loss
        self.autocast = dtype != torch.float32
        self.dtype = dtype

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ctx = (
            torch.autocast(self.device.type, dtype=self.dtype) if self.autocast else contextlib.nullcontext()
        )
        with ctx:
            loss, _metrics = self.loss_fn(batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def state_bytes(self) -> int:
        """Parameters and optimizer state: what lives between steps."""
        total = sum(p.numel() * p.element_size() for p in self.model.parameters())
        for state in self.optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
        return total


def random_batches(n: int, batch: int, seq_len: int, vocab: int, device: torch.device, seed: int = 0) -> list:
    """Synthetic token batches (inputs, next-token targets): the benchmark measures compute, not data loading."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tokens = torch.randint(0, vocab, (batch, seq_len + 1), generator=gen).to(device)
        out.append((tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()))
    return out


def time_steps(
    step: TrainStep,
    batches: list,
    warmup: int,
    steps: int,
    device: torch.device,
    meter: EnergyMeter | None = None,
) -> tuple[Timing, float, float | None]:
    """Run warm-up steps, then time `steps` steps one by one (synchronised). Returns the timing, the last loss and
    the energy in joules of the timed steps (None without a meter)."""
    loss = torch.tensor(float("nan"))
    for i in range(warmup):
        loss = step(batches[i % len(batches)])
    devinfo_sync(device)
    energy_start = meter.read() if meter else None
    samples = []
    for i in range(steps):
        t0 = time.perf_counter()
        loss = step(batches[i % len(batches)])
        devinfo_sync(device)
        samples.append((time.perf_counter() - t0) * 1e3)
    joules = meter.joules_since(energy_start) if meter and energy_start is not None else None
    return Timing.from_samples(samples, "wall clock per step, synchronised"), float(loss), joules


SYNC_WARNING = (
    "synchronizing CUDA operation"  # what torch.cuda.set_sync_debug_mode("warn") says, once per sync
)


def count_syncs(step: TrainStep, batches: list, steps: int, device: torch.device) -> float | None:
    """Host-device synchronisations per training step, counted over `steps` steady-state steps (run after the
    warm-up) with torch.cuda.set_sync_debug_mode("warn"): every implicit sync (.item(), a data-dependent shape,
    a copy to the host) warns once. No explicit synchronize runs between the counted steps. None off CUDA, where
    the mode does not exist."""
    if device.type != "cuda" or steps <= 0:
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(steps):
                step(batches[i % len(batches)])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    return sum(SYNC_WARNING in str(w.message) for w in caught) / steps


def float8_refusal(device: torch.device) -> str | None:
    """Why a float8 row cannot run here (one line: no float8 GEMMs, or torchao missing); None when it can."""
    from normia.training.float8 import float8_unsupported_reason, torchao_missing_reason

    reason = float8_unsupported_reason(device) or torchao_missing_reason()
    return reason.replace("use trainer.precision=bf16-mixed", "measure bf16 only") if reason else None


def devinfo_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(cfg: TrainBenchConfig) -> ResultsWriter:
    info = devinfo.describe(cfg.device)
    writer = ResultsWriter(cfg.out_dir, cfg.name, devinfo.provenance(info), COLUMNS)
    status = "failed"
    try:
        limits = measure_limits(cfg.device, dtype=cfg.dtype)
        meter, energy_note = open_meter(cfg.device)
        peak = bf16_peak_flops(info.name)
        writer.set_limits({
            **limits.as_dict(),
            "bf16_peak_tflops": None if peak is None else peak / 1e12,
            "mfu_note": "MFU = model FLOPs/s over the datasheet bf16 dense peak" if peak else
            f"no MFU: '{info.name}' is not in the bf16 peak table (normia.bench.limits)",
            "energy": energy_note,
        })  # fmt: skip
        started = time.monotonic()
        runs = [(size, c, f8) for size in cfg.sizes for c in cfg.compile for f8 in cfg.float8]
        for size, compiled, float8 in runs:
            base = {"model": size, "dtype": str(cfg.dtype).removeprefix("torch."), "compile": compiled,
                    "float8": float8, "kernels": cfg.kernels_backend}  # fmt: skip
            refused = float8_refusal(cfg.device) if float8 else None
            if refused:
                writer.add({**base, "status": "not measured", "reason": refused})
                continue
            if cfg.time_budget_s is not None and time.monotonic() - started > cfg.time_budget_s:
                writer.add(
                    {**base, "status": "skipped", "reason": f"time budget of {cfg.time_budget_s:g} s spent"}
                )
                continue
            writer.add(
                {
                    **base,
                    **_bench_size(size, compiled, float8, cfg, info.name, limits.matmul_flops_per_s, meter),
                }
            )
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        writer.finish(status, plot=functools.partial(plot, prefix=cfg.name) if cfg.plots else None)
    return writer


def _bench_size(
    size: str,
    compiled: bool | str,
    float8: bool,
    cfg: TrainBenchConfig,
    device_name: str,
    matmul_flops: float,
    meter,
) -> dict:  # type: ignore[no-untyped-def]
    s = SIZES[size]
    batch, seq_len = cfg.batch_size or s.batch_size, cfg.seq_len or s.seq_len
    row: dict = {"batch": batch, "seq_len": seq_len}
    step = None
    try:
        torch.manual_seed(0)
        model = build_llama(size, seq_len, activation_checkpointing=cfg.activation_checkpointing).to(
            cfg.device
        )
        row["params"] = int(model.num_params())
        flops_per_token = float(model.flops_per_token(seq_len))
        if float8:  # before torch.compile, as torchao and torchtitan do
            from normia.training.float8 import convert_to_float8

            row["float8_layers"] = convert_to_float8(model)
        step = TrainStep(model, cfg.dtype, cfg.device, compiled)
        batches = random_batches(2, batch, seq_len, s.vocab_size, cfg.device)
        backend = None if cfg.kernels_backend == "auto" else cfg.kernels_backend
        with ops_backend(backend):
            if cfg.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(cfg.device)
            timing, loss, joules = time_steps(step, batches, cfg.warmup, cfg.steps, cfg.device, meter)
            syncs = count_syncs(step, batches, cfg.sync_steps, cfg.device)
            # On a CPU the memory tracker (a dispatch mode) would run compiled code eagerly: no figure then.
            peak = (
                None if compiled and cfg.device.type == "cpu" else _peak_memory(step, batches[0], cfg.device)
            )
    except UserError:
        raise
    except Exception as err:  # one size failing (memory, compiler) must not lose the others
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if is_out_of_memory(err):
            return {**row, "status": "skipped", "reason": f"does not fit: {first_line}"}
        return {**row, "status": "error", "reason": f"{type(err).__name__}: {first_line}"}
    finally:
        del step
        if cfg.device.type == "cuda":
            torch.cuda.empty_cache()
    if not math.isfinite(loss):
        return {**row, "status": "error", "reason": f"loss is {loss} after {cfg.warmup + cfg.steps} steps"}
    tokens_per_s = batch * seq_len / (timing.median_ms * 1e-3)
    achieved = flops_per_token * tokens_per_s
    util = mfu(achieved, device_name)
    # The energy counter covers the timed steps only, whose tokens are steps * batch * seq_len. A counter that did
    # not move (a window shorter than its update period) gives no figure rather than 0 J/token.
    timed_tokens = cfg.steps * batch * seq_len
    measured = joules is not None and joules > 0
    energy_note = None
    if joules is not None and not measured:
        energy_note = f"not measured: the counter did not advance over {cfg.steps} timed steps (too short)"
    return {
        **row,
        "status": "ok",
        "step_ms": timing.median_ms,
        "step_p20_ms": timing.p20_ms,
        "step_p80_ms": timing.p80_ms,
        "tokens_per_s": tokens_per_s,
        "syncs_per_step": syncs,
        "j_per_token": j_per_unit(joules, timed_tokens) if measured else None,
        "tokens_per_kwh": tokens_per_kwh(joules, timed_tokens) if measured else None,
        "flops_per_token": flops_per_token,
        "model_tflops": achieved / 1e12,
        "mfu": util,
        "pct_of_matmul": 100 * achieved / matmul_flops,
        "peak_mem_gb": None if peak is None else peak / 1e9,
        "wh_per_mtok": wh_per_million(joules, timed_tokens) if measured else None,
        "energy_joules": joules if measured else None,
        **({"energy_note": energy_note} if energy_note else {}),
        "final_loss": loss,
        "samples_ms": timing.samples_ms,
        "timing_method": timing.method,
    }


def _peak_memory(step: TrainStep, batch: tuple, device: torch.device) -> int | None:
    """Peak bytes of a training step: the allocator's peak on a GPU (over the timed steps); on a CPU, parameters
    and optimizer state plus the peak of one more step's allocations."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        return step.state_bytes() + peak_bytes(lambda: step(batch), device, list(step.model.parameters()))
    except Exception:  # a compiled graph may refuse the tracking mode; then say nothing rather than guess
        return None


def plot(rows: list[dict], out_dir: Path, prefix: str = "train") -> list[Path]:
    """One PNG, `<prefix>.png`: see train_figure."""
    path = save(train_figure(rows), out_dir / f"{prefix}.png")
    return [path] if path else []


COMPILE_LABELS = {False: "eager", True: "torch.compile", "blocks": "torch.compile per block"}


def train_figure(rows: list[dict]) -> object | None:
    """tokens/s, step time, % of the matmul rate, MFU, peak memory and energy per model size, one bar per mode
    (eager / torch.compile); metrics nobody measured (MFU on a CPU) are left out. None without data."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    dtype_note = f", {ok[0].get('dtype')}" if ok[0].get("dtype") else ""
    return figure(
        [{**r, "mfu_pct": None if r.get("mfu") is None else 100 * r["mfu"],
          "mode": COMPILE_LABELS.get(r.get("compile"), str(r.get("compile"))) + (" + float8" if r.get("float8") else "")}
         for r in ok],
        x="model",
        x_label="model size (normia.bench.model_sizes)",
        panels=[("tokens_per_s", "throughput (tokens/s)"), ("step_ms", "step time (ms, median)"),
                ("pct_of_matmul", "model FLOP/s (% of matmul rate)"), ("mfu_pct", "MFU (% of bf16 peak)"),
                ("peak_mem_gb", "peak memory (GB)"), ("wh_per_mtok", "energy (Wh per million tokens)")],
        line="mode",
        legend_title="how the step ran",
        title=f"training step by model size (plain PyTorch loop{dtype_note})",
    )  # fmt: skip
