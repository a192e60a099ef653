"""`normia bench kernels`: forward, backward and forward+backward time of each kernel, shape and provider, with
peak memory, achieved GB/s (or TFLOP/s) from the minimal work, and the fraction of the limit measured in the same
run (device-to-device copy bandwidth for memory-bound kernels, the matmul rate for fused_linear_cross_entropy).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from normia.bench import device as devinfo
from normia.bench.kernel_specs import KERNELS, KernelSpec, Shape, shape_label
from normia.bench.limits import measure_limits
from normia.bench.memory import free_bytes, is_out_of_memory, peak_bytes
from normia.bench.plots import line_plot
from normia.bench.providers import Unavailable, build, ops_backend
from normia.bench.quality import (
    add_eager_ratios,
    flag_note,
    limit_spreads,
    provider_skips,
    row_flags,
    skipped_summary,
    spread,
)
from normia.bench.results import ResultsWriter
from normia.bench.timing import Timing, time_fn

PASSES = ("fwd", "bwd", "fwd+bwd")
COLUMNS = (
    "kernel", "shape", "dtype", "provider", "pass", "status", "median_ms", "p20_ms", "p80_ms", "spread",
    "x_eager", "gbps", "tflops", "pct_of_limit", "limit", "flag", "peak_mem_mb", "rel_err", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class KernelsConfig:
    kernels: Sequence[str]
    shapes: dict[str, list[Shape]]  # kernel -> shapes
    providers: Sequence[str]
    dtype: torch.dtype
    device: torch.device
    out_dir: Path
    min_time_s: float = 0.2
    time_budget_s: float | None = None
    plots: bool = True
    name: str = "kernels"  # results file base name: <out_dir>/<name>.json, .csv, .md
    passes: Sequence[str] = PASSES
    threads_reason: str | None = None  # why torch has cpu_threads threads (recorded beside it in the JSON)


def run(cfg: KernelsConfig) -> ResultsWriter:
    info = devinfo.describe(cfg.device)
    meta = devinfo.provenance(info)
    if cfg.threads_reason:
        meta["cpu_threads_reason"] = cfg.threads_reason
    writer = ResultsWriter(cfg.out_dir, cfg.name, meta, COLUMNS)
    status = "failed"
    try:
        limits = measure_limits(cfg.device, dtype=cfg.dtype, min_time_s=max(0.05, 1.5 * cfg.min_time_s))
        writer.doc["limit_spread"] = limit_spreads(limits.as_dict())
        writer.set_limits(limits.as_dict())
        ceilings = {"copy": limits.copy_bytes_per_s, "matmul": limits.matmul_flops_per_s}
        started = time.monotonic()
        compiled: dict = {}
        for name in cfg.kernels:
            for shape in cfg.shapes[name]:
                over = cfg.time_budget_s is not None and time.monotonic() - started > cfg.time_budget_s
                _bench_shape(KERNELS[name], shape, cfg, ceilings, compiled, writer, over_budget=over)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        _summarize(writer)
        writer.finish(status, plot=functools.partial(plot, prefix=cfg.name) if cfg.plots else None)
    return writer


def _summarize(writer: ResultsWriter) -> None:
    """At the end (complete or interrupted): the x eager ratios, which need every provider's row of a shape, and
    what was skipped and why, once for the whole run."""
    add_eager_ratios(writer.rows)
    writer.doc["skipped"] = skipped_summary(writer.rows)


def _base(spec: KernelSpec, shape: Shape, cfg: KernelsConfig, provider: str, pass_: str) -> dict:
    return {
        "kernel": spec.name,
        "shape": shape_label(shape),
        "dims": "x".join(spec.dims),
        "dtype": str(cfg.dtype).removeprefix("torch."),
        "provider": provider,
        "pass": pass_,
    }


def _skip_all(spec, shape, cfg, writer, providers, reason: str, status: str = "skipped") -> None:  # type: ignore[no-untyped-def]
    for provider in providers:  # one row per provider, pass "all": nothing was timed
        writer.add({**_base(spec, shape, cfg, provider, "all"), "status": status, "reason": reason})


def _bench_shape(
    spec: KernelSpec,
    shape: Shape,
    cfg: KernelsConfig,
    ceilings: dict[str, float],
    compiled: dict,
    writer: ResultsWriter,
    *,
    over_budget: bool,
) -> None:
    if over_budget:
        _skip_all(spec, shape, cfg, writer, cfg.providers, f"time budget of {cfg.time_budget_s:g} s spent")
        return
    itemsize = torch.finfo(cfg.dtype).bits // 8
    need, free = spec.memory_needed(shape, itemsize), free_bytes(cfg.device)
    if need > 0.9 * free:
        reason = f"does not fit: needs ~{need / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free"
        _skip_all(spec, shape, cfg, writer, cfg.providers, reason)
        return
    try:
        inputs = spec.make_inputs(shape, cfg.dtype, cfg.device)
        reference = _reference_output(spec, inputs)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        _release(cfg.device)
        _skip_all(spec, shape, cfg, writer, cfg.providers, f"out of memory making inputs: {_line(err)}")
        return
    for provider in cfg.providers:
        try:
            impl = build(provider, spec, cfg.device, compiled)
        except Unavailable as why:
            _skip_all(spec, shape, cfg, writer, [provider], str(why))
            continue
        try:
            with ops_backend(impl.backend):
                for row in _measure(spec, shape, cfg, impl.fn, inputs, reference, ceilings, provider):
                    writer.add(row)  # on disk as soon as measured
        except Exception as err:
            oom = is_out_of_memory(err)
            _release(cfg.device)
            reason = f"out of memory: {_line(err)}" if oom else f"{type(err).__name__}: {_line(err)}"
            _skip_all(spec, shape, cfg, writer, [provider], reason, "skipped" if oom else "error")
    del inputs, reference
    _release(cfg.device)


def _measure(spec, shape, cfg, fn, inputs, reference, ceilings, provider) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    """Yield one row per pass (fwd, bwd, fwd+bwd) of one provider at one shape."""
    device = cfg.device
    diff = [inputs[n] for n in spec.differentiable]
    out = fn(**inputs)
    rel_err = _rel_err(_first(out), reference)
    outs = _grad_outputs(out)
    grads = [torch.randn_like(o) if o.dim() else torch.ones_like(o) for o in outs]

    def fwd() -> object:
        return fn(**inputs)

    def bwd() -> object:
        return torch.autograd.grad(outs, diff, grads, retain_graph=True)

    def fwd_bwd() -> object:
        return torch.autograd.grad(_grad_outputs(fn(**inputs)), diff, grads)

    itemsize = torch.finfo(cfg.dtype).bits // 8
    work = {
        "fwd": spec.work_fwd(shape, itemsize),
        "bwd": spec.work_bwd(shape, itemsize),
    }
    work["fwd+bwd"] = work["fwd"] + work["bwd"]
    for pass_, call in (("fwd", fwd), ("bwd", bwd), ("fwd+bwd", fwd_bwd)):
        if pass_ not in cfg.passes:
            continue
        try:
            timing = time_fn(call, device, min_time_s=cfg.min_time_s)
            # The CPU memory tracker (a dispatch mode) makes compiled code fall back to eager: no figure then.
            untracked = pass_ == "bwd" or (provider == "compile" and device.type == "cpu")
            peak = None if untracked else peak_bytes(call, device, list(inputs.values()))
        except Exception as err:
            if is_out_of_memory(err):
                raise
            reason, status = f"{type(err).__name__}: {_line(err)}", "error"
            if pass_ == "bwd":  # fused losses compute gradients in the forward: backward cannot run twice
                reason, status = f"backward cannot be timed alone ({reason})", "skipped"
            yield {**_base(spec, shape, cfg, provider, pass_), "status": status, "reason": reason}
            continue
        yield _row(spec, shape, cfg, provider, pass_, timing, work[pass_], ceilings, peak, rel_err)


def _row(spec, shape, cfg, provider, pass_, timing: Timing, work: float, ceilings, peak, rel_err) -> dict:  # type: ignore[no-untyped-def]
    seconds = timing.median_ms * 1e-3
    row = {
        **_base(spec, shape, cfg, provider, pass_),
        "status": "ok",
        "median_ms": timing.median_ms,
        "p20_ms": timing.p20_ms,
        "p80_ms": timing.p80_ms,
        "spread": spread(timing.p20_ms, timing.p80_ms),
        "peak_mem_mb": None if peak is None else peak / 2**20,
        "rel_err": rel_err,
        "samples_ms": timing.samples_ms,
        "timing_method": timing.method,
    }
    if spec.bound == "memory":
        row.update(
            gbps=work / seconds / 1e9, pct_of_limit=100 * work / seconds / ceilings["copy"], limit="copy"
        )
        row["min_bytes"] = work
    else:
        row.update(tflops=work / seconds / 1e12, pct_of_limit=100 * work / seconds / ceilings["matmul"])
        row.update(limit="matmul", flops=work)
    row["flag"] = row_flags(row)  # never a '% of limit' over 100 or a noisy median without saying so
    return row


def _reference_output(spec: KernelSpec, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The eager forward output computed in float64 on detached copies: what every provider is compared with."""
    wide = {k: v.detach().double() if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        return _first(spec.eager(**wide)).detach()


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    diff = (out.detach().double() - ref).norm()
    return float(diff / ref.norm().clamp_min(1e-30))


def _first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


def _grad_outputs(out: object) -> list[torch.Tensor]:
    items = out if isinstance(out, (tuple, list)) else [out]
    return [o for o in items if isinstance(o, torch.Tensor) and o.requires_grad]


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def plot(rows: list[dict], out_dir: Path, prefix: str = "kernels") -> list[Path]:
    """One PNG per kernel: time, % of limit and speed against eager by shape, one series per provider, one column
    per pass; the title names each provider with no measured row and why (e.g. "triton: skipped (no GPU)")."""
    add_eager_ratios(rows)  # JSON files written before the ratios existed get them here
    paths = []
    for kernel in dict.fromkeys(r["kernel"] for r in rows):
        everything = [r for r in rows if r["kernel"] == kernel]
        subset = [r for r in everything if r["status"] == "ok"]
        if not subset:
            continue
        notes = [
            "; ".join(f"{p}: skipped ({why})" for p, why in provider_skips(everything).items()),
            flag_note(subset),
        ]
        path = line_plot(
            subset,
            out_dir / f"{prefix}_{kernel}.png",
            x="shape",
            panels=[
                ("median_ms", "time (ms, median)"),
                ("pct_of_limit", "% of limit (copy or matmul,\nmeasured in the run)"),
                ("x_eager", "x eager (eager time / this\ntime, > 1 = faster)"),
            ],
            line="provider",
            series_label=_provider_label,
            legend_title="implementation",
            x_label=f"shape ({' x '.join(KERNELS[kernel].dims)})",
            facet="pass",
            facet_order=PASSES,
            title="\n".join([f"{kernel} ({subset[0]['dtype']}), by pass", *filter(None, notes)]),
            log_y=("median_ms",),
        )
        if path is not None:
            paths.append(path)
    return paths


def _provider_label(provider: object) -> str:
    """Legend words for a provider name."""
    return {"triton": "normia Triton", "eager": "PyTorch eager", "compile": "torch.compile",
            "reference": "normia reference (PyTorch)", "liger": "Liger-Kernel"}.get(str(provider), str(provider))  # fmt: skip
