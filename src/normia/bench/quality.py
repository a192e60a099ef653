"""Whether a kernels row can be trusted, how it compares with eager PyTorch, and what was not measured (issue 25 D6).

- spread = p80 / p20 of a row's samples. Repeated timings of one deterministic kernel on a quiet machine agree to a
  few percent (blocked_autorange and CUDA events: p80/p20 < 1.1). Above SPREAD_LIMIT = 1.5, a fifth of the samples
  are 50% slower than the fastest fifth: the machine was busy, and the median is uncertain by more than the
  differences the table is read for (normia vs eager is often 1.1-2x). Such a row is flagged 'noisy'.
- pct_of_limit > 100: a kernel cannot move its minimal bytes faster than a plain copy (or do its FLOPs faster than
  a large matmul) measured in the same run. The limit or the timing was disturbed, or on a CPU the data fitted in
  cache while the copy limit is measured on 64 MB (DRAM). Flagged 'over limit'; never shown without the flag.
- x_eager = eager median / this row's median, same kernel, shape, dtype and pass: > 1 is faster than eager.
"""

from __future__ import annotations

from collections.abc import Sequence

SPREAD_LIMIT = 1.5
NOISY, OVER_LIMIT = "noisy", "over limit"


def spread(p20_ms: float, p80_ms: float) -> float | None:
    """p80 / p20 (1.0 = every sample the same); None when p20 is not positive (JSON has no infinity)."""
    return p80_ms / p20_ms if p20_ms > 0 else None


def row_flags(row: dict) -> str:
    """'noisy', 'over limit', both ('; '-joined), or '' for a row whose figures can be read as they are."""
    flags = []
    if (row.get("spread") or 0) > SPREAD_LIMIT:
        flags.append(NOISY)
    if (row.get("pct_of_limit") or 0) > 100:
        flags.append(OVER_LIMIT)
    return "; ".join(flags)


def limit_spreads(limits: dict) -> dict[str, float]:
    """spread of each limit measured in the run (copy, matmul), from its timing's percentiles."""
    out = {}
    for name in ("copy", "matmul"):
        timing = limits.get(f"{name}_timing") or {}
        if timing.get("p20_ms") and timing.get("p80_ms"):
            out[name] = spread(timing["p20_ms"], timing["p80_ms"])
    return out


def _key(row: dict) -> tuple:
    return row.get("kernel"), row.get("shape"), row.get("dtype"), row.get("pass")


def add_eager_ratios(rows: Sequence[dict]) -> None:
    """Set x_eager on every measured row that has an eager row beside it (eager itself gets 1.0)."""
    eager = {
        _key(r): r["median_ms"] for r in rows if r.get("status") == "ok" and r.get("provider") == "eager"
    }
    for row in rows:
        base = eager.get(_key(row))
        if row.get("status") == "ok" and base and row.get("median_ms"):
            row["x_eager"] = base / row["median_ms"]


def skipped_summary(rows: Sequence[dict]) -> list[dict]:
    """One entry per (provider, status, reason) of the rows not measured: which kernels, how many rows."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        if row.get("status") in (None, "ok"):
            continue
        key = (row.get("provider"), row["status"], row.get("reason") or "")
        entry = groups.setdefault(key, {"provider": key[0], "status": key[1], "reason": key[2], "rows": 0,
                                        "kernels": []})  # fmt: skip
        entry["rows"] += 1
        if row.get("kernel") not in entry["kernels"]:
            entry["kernels"].append(row.get("kernel"))
    return list(groups.values())


def provider_skips(rows: Sequence[dict]) -> dict[str, str]:
    """provider -> why, for each provider with no measured row among `rows` (for a plot's title)."""
    measured = {r.get("provider") for r in rows if r.get("status") == "ok"}
    out: dict[str, str] = {}
    for row in rows:
        provider = row.get("provider")
        if provider not in measured and row.get("status") != "ok":
            out.setdefault(str(provider), short_reason(row.get("reason") or row.get("status") or ""))
    return out


def short_reason(reason: str) -> str:
    """A few words for a plot: 'no GPU', 'not installed', or the reason's first clause."""
    if "CUDA GPU" in reason:
        return "no GPU"
    if "not installed" in reason:
        return "not installed"
    return reason.split(":")[0].split("(")[0].strip()[:40]


def flag_note(rows: Sequence[dict]) -> str:
    """A plot's words for its flagged rows ('' when none): a bar over 100% is never drawn without them."""
    counts = {f: sum(f in (r.get("flag") or "") for r in rows) for f in (OVER_LIMIT, NOISY)}
    parts = [f"{n} {f}" for f, n in counts.items() if n]
    return f"flagged rows (see the JSON's 'flag'): {', '.join(parts)}" if parts else ""


def summary_lines(doc: dict) -> list[str]:
    """The end of a run's output: what was skipped and why, then one warning per kind of untrustworthy figure."""
    lines = [f"skipped: {s['provider']} ({s['status']}, {s['rows']} rows: {', '.join(map(str, s['kernels']))}): "
             f"{s['reason'][:160]}" for s in doc.get("skipped") or []]  # fmt: skip
    rows = doc.get("rows") or []
    noisy = sum(NOISY in (r.get("flag") or "") for r in rows)
    over = sum(OVER_LIMIT in (r.get("flag") or "") for r in rows)
    ok = sum(r.get("status") == "ok" for r in rows)
    threads = doc.get("cpu_threads") or 1
    fewer = f", with fewer threads (--threads {threads // 2}) " if threads > 1 else " "
    if noisy:
        lines.append(
            f"warning: {noisy} of {ok} rows are noisy (p80/p20 > {SPREAD_LIMIT:g}): their medians are uncertain; "
            f"rerun on a quiet machine{fewer}or with a longer --min-time"
        )
    if over:
        lines.append(
            f"warning: {over} rows show more than 100% of the measured limit, impossible for a real measurement: "
            "the limit or the kernel timing was disturbed (or, on a CPU, the data fitted in cache); rerun on a "
            "quiet machine or with larger shapes"
        )
    for name, value in (doc.get("limit_spread") or {}).items():
        if value > SPREAD_LIMIT:
            lines.append(
                f"warning: the {name} limit itself was noisy (p80/p20 {value:.2g}): every '% of limit' is uncertain"
            )
    return lines
