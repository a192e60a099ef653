"""Per-interval training speed for `normia train` (issue 23): samples/s, tokens/s, step time, the share of time spent
between steps (data loading and loop overhead), achieved TFLOP/s and MFU per device, peak device memory.

Read at logging steps only, from the host clock: a logging step already reads the loss (a host-device sync), so the
wall time between two logging steps covers the device's work to within one step, and no extra sync is added.
FLOPs per token: the model's own `flops_per_token(seq_len)` when it has one (normia's Llama: 6N + attention, the
PaLM convention), else 6 x trainable parameters per token (Kaplan et al. 2020, "Scaling Laws", C ~ 6N; no attention
term). Models that do not read tokens get no MFU: 6N per sample is wrong for convolutions, and a wrong MFU is worse
than none.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from normia.device_peaks import bf16_peak_flops


@dataclass
class FlopsCount:
    per_token: float | None  # training FLOPs (forward + backward) per token; None: not counted
    how: str  # how it was counted, or why it was not


def model_flops(net: Any, tokens: int, samples: int) -> FlopsCount:
    """FLOPs per token of `net` for batches of `samples` sequences holding `tokens` tokens in all."""
    if tokens <= 0 or samples <= 0:
        return FlopsCount(None, "not a token model: no FLOP count")
    seq_len = max(1, tokens // samples)
    own = getattr(net, "flops_per_token", None)
    if callable(own):
        return FlopsCount(float(own(seq_len)), f"the model's flops_per_token (seq_len {seq_len})")
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return FlopsCount(6.0 * params, "6 x trainable parameters (no attention term)")


@dataclass
class DevicePeak:
    flops: float | None  # bf16 dense FLOP/s of one device; None: MFU not measured
    why_not: str = ""


def device_peak(device: Any) -> DevicePeak:
    """The bf16 peak of a torch.device, or why there is none."""
    if getattr(device, "type", "cpu") != "cuda":
        return DevicePeak(None, f"no bf16 peak for a {getattr(device, 'type', 'cpu')} device")
    import torch

    name = torch.cuda.get_device_name(device)
    peak = bf16_peak_flops(name)
    return DevicePeak(peak, "" if peak else f"no bf16 peak known for '{name}' (normia.device_peaks)")


@dataclass
class IntervalSpeed:
    """Accumulates one logging interval of one rank; `take` returns its metrics and starts the next interval.

    Units: seconds, samples and tokens of all ranks (world_size x this rank's, as every rank steps together)."""

    world_size: int
    flops: FlopsCount
    peak: DevicePeak
    steps: int = 0
    samples: int = 0
    tokens: int = 0
    between_s: float = 0.0
    start: float | None = None
    last_end: float | None = None
    mfus: list[float] = field(default_factory=list)
    tflops: list[float] = field(default_factory=list)

    def batch_start(self, now: float) -> None:
        if self.start is None:
            self.start = now
        elif self.last_end is not None:
            self.between_s += now - self.last_end

    def batch_end(self, now: float, samples: int, tokens: int) -> None:
        self.steps += 1
        self.samples += samples * self.world_size
        self.tokens += tokens * self.world_size
        self.last_end = now

    def take(self, now: float, peak_memory_gb: float | None = None) -> dict[str, float]:
        """speed/* metrics of the interval that ends now (empty when it holds no step)."""
        if self.start is None or self.steps == 0 or now <= self.start:
            return {}
        elapsed = now - self.start
        out = {
            "speed/samples_per_s": self.samples / elapsed,
            "speed/step_time_s": elapsed / self.steps,
            "speed/between_steps_frac": min(1.0, self.between_s / elapsed),
        }
        if self.tokens:
            out["speed/tokens_per_s"] = self.tokens / elapsed
            if self.flops.per_token is not None:
                per_device = self.flops.per_token * self.tokens / elapsed / self.world_size
                out["speed/tflops_per_device"] = per_device / 1e12
                self.tflops.append(per_device / 1e12)
                if self.peak.flops:
                    out["speed/mfu"] = per_device / self.peak.flops
                    self.mfus.append(out["speed/mfu"])
        if peak_memory_gb is not None:
            out["speed/peak_memory_gb"] = peak_memory_gb
        self.steps = self.samples = self.tokens = 0
        self.between_s = 0.0
        self.start = self.last_end = now
        return out

    def summary(self) -> dict[str, Any]:
        """For the run summary: median MFU and TFLOP/s over the intervals after the first (warm-up), or why not."""
        steady = lambda xs: xs[1:] if len(xs) > 1 else xs
        out: dict[str, Any] = {"flops_counted": self.flops.how}
        if self.tflops:
            out["tflops_per_device"] = statistics.median(steady(self.tflops))
        if self.mfus:
            out["mfu"] = statistics.median(steady(self.mfus))
        else:
            out["mfu_not_measured"] = self.peak.why_not or self.flops.how
        return out
