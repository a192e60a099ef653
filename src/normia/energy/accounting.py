"""Energy accounting of one run: per-rank windows, the sum over ranks and nodes, the partial sum carried across
requeues, and the report (kWh, mean power, J/sample, J/token, tokens per kWh, gCO2e).

A record (one rank's, or the run's) is a plain JSON-able dict, so that it can be gathered across ranks
(all_gather_object) and stored in a checkpoint:

    {"joules":  {"train": {"gpu": J, "cpu": J, "dram": J}, "val": {...}},
     "seconds": {"train": s, "val": s},
     "samples": n, "tokens": n,                      # training units these joules paid for
     "kinds":   {"gpu": {"sources": [...], "missing": [...], "estimate": bool}, ...}}

Units: joules (J) inside, kWh in the report (1 kWh = 3.6e6 J), watts = J/s.
Carbon: gCO2e = kWh x PUE x carbon intensity (gCO2e/kWh), the location-based method of the GHG Protocol's Scope 2
guidance applied to the energy measured at the devices; PUE (power usage effectiveness, ISO/IEC 30134-2) scales
device energy up to the facility's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any

from normia.energy.counters import KINDS, CounterSet

PHASES = ("train", "val")
J_PER_KWH = 3.6e6


def empty_record() -> dict[str, Any]:
    return {
        "joules": {p: {} for p in PHASES},
        "seconds": {p: 0.0 for p in PHASES},
        "samples": 0,
        "tokens": 0,
        "kinds": {},
    }


class EnergyWindows:
    """One rank's energy per phase: `begin("train")`, `begin("val")` (closes the previous window), `end()`.
    Windows are read from this rank's counters only (see counters.open_counters: its GPU, and the node's CPU on
    local rank 0 only)."""

    def __init__(self, counters: CounterSet, clock: Callable[[], float] = time.monotonic) -> None:
        self.counters = counters
        self.clock = clock
        self.record = empty_record()
        for c in counters.counters:
            kind = self.record["kinds"].setdefault(c.kind, {"sources": [], "missing": [], "estimate": False})
            kind["sources"].append(c.source)
            kind["estimate"] = kind["estimate"] or c.estimate
        for kind_name, why in counters.missing.items():
            kind = self.record["kinds"].setdefault(
                kind_name, {"sources": [], "missing": [], "estimate": False}
            )
            kind["missing"].append(why)
        self.phase: str | None = None
        self._start: list[float] = []
        self._t0 = 0.0

    def begin(self, phase: str) -> None:
        """Start a window of `phase` now (closing the open one, if any)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")
        self.end()
        self.phase, self._start, self._t0 = phase, self.counters.read(), self.clock()

    def end(self) -> None:
        """Close the open window (nothing if none)."""
        if self.phase is not None:
            self._close(self.counters.read(), self.clock())
            self.phase = None

    def add_units(self, samples: int, tokens: int) -> None:
        self.record["samples"] += int(samples)
        self.record["tokens"] += int(tokens)

    def snapshot(self) -> dict[str, Any]:
        """This rank's totals so far, the open window included up to now (it goes on from here: nothing is
        counted twice)."""
        if self.phase is not None:
            end, now = self.counters.read(), self.clock()
            self._close(end, now)
            self._start, self._t0 = end, now
        return copy.deepcopy(self.record)

    def _close(self, end: list[float], now: float) -> None:
        assert self.phase is not None
        into = self.record["joules"][self.phase]
        for kind, joules in self.counters.joules_by_kind(self._start, end).items():
            into[kind] = into.get(kind, 0.0) + joules
        self.record["seconds"][self.phase] += now - self._t0


def combine(records: Iterable[dict[str, Any]], seconds: str = "max") -> dict[str, Any]:
    """Sum records: joules, samples and tokens add up; seconds take the longest rank's (`seconds="max"`, ranks run
    side by side) or add up (`"sum"`, successive attempts of a requeued run). Sources and reasons are kept, each
    reason once."""
    out = empty_record()
    for rec in records:
        for phase in PHASES:
            into = out["joules"][phase]
            for kind, joules in rec["joules"].get(phase, {}).items():
                into[kind] = into.get(kind, 0.0) + float(joules)
            then, now = out["seconds"][phase], float(rec["seconds"].get(phase, 0.0))
            out["seconds"][phase] = max(then, now) if seconds == "max" else then + now
        out["samples"] += int(rec.get("samples", 0))
        out["tokens"] += int(rec.get("tokens", 0))
        for kind, info in rec.get("kinds", {}).items():
            into = out["kinds"].setdefault(kind, {"sources": [], "missing": [], "estimate": False})
            into["sources"] += [s for s in info["sources"] if seconds == "max" or s not in into["sources"]]
            into["missing"] += [m for m in info["missing"] if m not in into["missing"]]
            into["estimate"] = into["estimate"] or bool(info.get("estimate"))
    return out


def accumulate(previous: dict[str, Any] | None, attempt: dict[str, Any]) -> dict[str, Any]:
    """The run's totals after one more attempt (a requeued run resumes with `previous` from its checkpoint)."""
    return attempt if not previous else combine([previous, attempt], seconds="sum")


# --- report -------------------------------------------------------------------------------------------------------


def kwh(joules: float) -> float:
    """Joules to kilowatt-hours (1 kWh = 3.6e6 J)."""
    return joules / J_PER_KWH


def gco2e(kwh_value: float, pue: float, carbon_intensity_g_per_kwh: float) -> float:
    """Grams of CO2-equivalent: device kWh x PUE x the grid's carbon intensity (gCO2e/kWh)."""
    return kwh_value * pue * carbon_intensity_g_per_kwh


def counted_kinds(total: dict[str, Any]) -> list[str]:
    """Kinds with a counter on at least one rank (measured or, when asked for, estimated), in KINDS order."""
    return [k for k in KINDS if total["kinds"].get(k, {}).get("sources")]


def kind_label(info: dict[str, Any]) -> str:
    """'measured: <counter>', 'estimate: <how> (not measured: <why>)', 'partial: ...' or 'not measured: <why>'."""
    sources, missing = info.get("sources", []), info.get("missing", [])
    why = "; ".join(missing)
    if not sources:
        return f"not measured: {why}"
    names = sorted({s.split(" of ")[0] for s in sources})
    counter = f"{', '.join(names)} ({len(sources)} counter{'s' if len(sources) > 1 else ''})"
    if info.get("estimate"):
        return f"estimate: {counter}" + (f" (not measured: {why})" if why else "")
    if missing:
        return f"partial: measured: {counter}; not measured on other ranks: {why}"
    return f"measured: {counter}"


def report(total: dict[str, Any], pue: float, carbon_intensity_g_per_kwh: float) -> dict[str, Any]:
    """The run's figures from its totals: {"metrics": {name: value}, "tags": {name: label}, "kinds": {...}}.

    Metric names (MLflow keys; a figure with any estimated part ends in `_estimate`):
    energy/{train,val}_kwh, energy/{train,val}_{gpu,cpu,dram}_kwh, energy/kwh (train + val),
    energy/train_mean_power_w, energy/train_j_per_sample, energy/train_j_per_token, energy/train_tokens_per_kwh,
    energy/gco2e (all of the run's energy x PUE x carbon intensity). A kind without a counter has no metric, only its
    tag saying why."""
    kinds = counted_kinds(total)
    estimated = {k for k in kinds if total["kinds"][k].get("estimate")}
    any_estimate = "_estimate" if estimated else ""
    metrics: dict[str, float] = {}
    tags = {f"normia.energy.{k}": kind_label(info) for k, info in sorted(total["kinds"].items())}
    joules = {p: sum(total["joules"][p].get(k, 0.0) for k in kinds) for p in PHASES}
    if kinds:
        for phase in PHASES:
            if phase == "val" and not total["seconds"]["val"]:
                continue
            metrics[f"energy/{phase}_kwh{any_estimate}"] = kwh(joules[phase])
            for k in kinds:
                suffix = "_estimate" if k in estimated else ""
                metrics[f"energy/{phase}_{k}_kwh{suffix}"] = kwh(total["joules"][phase].get(k, 0.0))
        run_kwh = kwh(joules["train"] + joules["val"])
        metrics[f"energy/kwh{any_estimate}"] = run_kwh
        if total["seconds"]["train"] > 0:
            metrics[f"energy/train_mean_power_w{any_estimate}"] = joules["train"] / total["seconds"]["train"]
        if total["samples"]:
            metrics[f"energy/train_j_per_sample{any_estimate}"] = joules["train"] / total["samples"]
        if total["tokens"]:
            metrics[f"energy/train_j_per_token{any_estimate}"] = joules["train"] / total["tokens"]
            if joules["train"] > 0:
                metrics[f"energy/train_tokens_per_kwh{any_estimate}"] = total["tokens"] / kwh(joules["train"])
        metrics[f"energy/gco2e{any_estimate}"] = gco2e(run_kwh, pue, carbon_intensity_g_per_kwh)
    what = " + ".join(kinds)
    if not kinds:
        total_tag = "not measured: no energy counter readable (see normia.energy.<kind>)"
    elif estimated:
        total_tag = f"estimate: {what}, of which {' + '.join(sorted(estimated))} estimated"
    else:
        total_tag = f"measured: {what}"
    absent = [k for k in total["kinds"] if k not in kinds]
    if kinds and absent:
        total_tag += f"; without {' + '.join(absent)} (not measured)"
    tags["normia.energy.total"] = total_tag
    tags["normia.energy.gco2e"] = (
        f"{total_tag.split(':')[0]}: kWh x PUE {pue:g} x {carbon_intensity_g_per_kwh:g} gCO2e/kWh"
        if kinds
        else total_tag
    )
    return {"metrics": metrics, "tags": {k: v[:5000] for k, v in tags.items()}, "totals": total}


def summary_lines(rep: dict[str, Any]) -> list[str]:
    """The run summary's energy lines (the figures a reader looks for first, then what was not measured)."""
    m, tags = rep["metrics"], rep["tags"]
    est = next((k for k in m if k.endswith("_estimate")), None) is not None
    sfx = "_estimate" if est else ""
    label = " (ESTIMATE)" if est else ""
    lines = []
    if f"energy/kwh{sfx}" in m:
        parts = [f"train {m[f'energy/train_kwh{sfx}']:.4g} kWh"]
        kinds = [k for k in KINDS if any(key.startswith(f"energy/train_{k}_kwh") for key in m)]
        parts[0] += (
            " ("
            + ", ".join(
                f"{k} {m.get(f'energy/train_{k}_kwh', m.get(f'energy/train_{k}_kwh_estimate', 0.0)):.4g}"
                for k in kinds
            )
            + ")"
        )
        if f"energy/val_kwh{sfx}" in m:
            parts.append(f"val {m[f'energy/val_kwh{sfx}']:.4g} kWh")
        if f"energy/train_mean_power_w{sfx}" in m:
            parts.append(f"mean power {m[f'energy/train_mean_power_w{sfx}']:.4g} W")
        lines.append(f"  energy{label}  " + ", ".join(parts))
        per = []
        if f"energy/train_j_per_token{sfx}" in m:
            per.append(f"{m[f'energy/train_j_per_token{sfx}']:.4g} J/token")
        if f"energy/train_tokens_per_kwh{sfx}" in m:
            per.append(f"{m[f'energy/train_tokens_per_kwh{sfx}']:.4g} tokens/kWh")
        if f"energy/train_j_per_sample{sfx}" in m and not per:
            per.append(f"{m[f'energy/train_j_per_sample{sfx}']:.4g} J/sample")
        per.append(f"{m[f'energy/gco2e{sfx}']:.4g} gCO2e ({tags['normia.energy.gco2e']})")
        lines.append("            " + ", ".join(per))
    unmeasured: dict[str, list[str]] = {}  # label -> kinds, so that one reason shared by kinds is said once
    for key, value in tags.items():
        kind = key.removeprefix("normia.energy.")
        if kind in KINDS and not value.startswith("measured"):
            unmeasured.setdefault(value, []).append(kind)
    for value, kinds in unmeasured.items():
        lines.append(f"  energy    {', '.join(kinds)}: {value}")
    return lines
