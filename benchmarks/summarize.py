"""A short markdown summary of one results folder: first one screen with one line per target (issue 15) and its
verdict, PASS / MISS / NOT MEASURED, then the figures behind it (for benchmarks/README.md's "Latest results").

    python benchmarks/summarize.py benchmarks/results/<device>-<date>            # targets, then the figures
    python benchmarks/summarize.py benchmarks/results/<device>-<date> --targets  # the one screen only

Kernels: forward+backward at each kernel's largest measured shape, per provider (time, % of the measured limit, peak
memory). Train, scaling, overhead and start-up: their main figures. Reads only the JSON files the benchmarks wrote.
The thresholds are in TARGETS, nowhere else.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

PASS, MISS, NOT_MEASURED = "PASS", "MISS", "NOT MEASURED"


@dataclass(frozen=True)
class Target:
    key: str
    text: str  # what is promised, with its threshold
    threshold: float | None


# The targets of issue 15, in one place. Each check below reads its threshold from here.
TARGETS = {t.key: t for t in (
    Target("bandwidth", "kernels >= 85% of copy GB/s (FLCE: matmul rate), largest shape, fwd+bwd", 85.0),
    Target("vs_eager", "kernels >= 1.0x eager at every shape, fwd+bwd", 1.0),
    Target("flce_memory", "fused linear CE memory <= 1/4 of unfused (8192x4096x128256)", 0.25),
    Target("flce_time", "fused linear CE time <= 1.1x unfused (same shape)", 1.1),
    Target("mfu", "MFU of the ~1B LLaMA (bf16) >= 45%", 0.45),
    Target("float8", "float8 (torchao) tokens/s > bf16, ~1B LLaMA", 1.0),
    Target("syncs", "host-device syncs per training step = 0", 0.0),
    Target("energy", "energy per token (NVML), Wh per million tokens", None),
    Target("normia_loss", "normia train 125M: triton and torch kernels, same loss curve", None),
    Target("normia_fsdp", "normia train 125M, trainer=fsdp on one GPU, to the end", None),
    Target("normia_resume", "normia train: Ctrl-C saves (exit 130), resume to max_steps", None),
    # issue 22 (benchmarks/checkpoint.py)
    Target("ckpt_async", "async checkpoint blocks training <= 10% of a synchronous sharded save", 0.10),
    Target("ckpt_total", "sharded save total <= 1.5x the disk's write time for the same bytes", 1.5),
)}  # fmt: skip
FLCE_SHAPE = "8192x4096x128256"


def _load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def kernels(doc: dict) -> list[str]:
    lim = doc["limits"]
    lines = [f"Kernels ({doc['rows'][0]['dtype'] if doc['rows'] else ''}; copy {lim['copy_gbps']:.1f} GB/s, matmul "
             f"{lim['matmul_tflops']:.3g} TFLOP/s measured in the run), forward+backward at the largest shape:", "",
             "| kernel | shape | provider | ms (p20-p80) | % of limit | peak MB |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    ok = [r for r in doc["rows"] if r["status"] == "ok" and r["pass"] == "fwd+bwd"]
    for kernel in dict.fromkeys(r["kernel"] for r in ok):
        rows = [r for r in ok if r["kernel"] == kernel]
        largest = rows[-1]["shape"]
        for r in (r for r in rows if r["shape"] == largest):
            flag = f" ({r['flag']})" if r.get("flag") else ""  # noisy / over limit (normia.bench.quality)
            lines.append(f"| {kernel} | {largest} | {r['provider']} | {_f(r['median_ms'])} ({_f(r['p20_ms'])}-"
                         f"{_f(r['p80_ms'])}) | {_f(r['pct_of_limit'])}{flag} | {_f(r['peak_mem_mb'])} |")  # fmt: skip
    return lines


def train(doc: dict) -> list[str]:
    lines = ["Training (plain PyTorch loop, synthetic tokens):", "",
             "| model | params | compile | float8 | step ms | tokens/s | MFU | % of matmul | peak GB | syncs/step | "
             "Wh/Mtok | J/token |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in doc["rows"]:
        mode = f"{r['model']} | {_f(r.get('params'))} | {r.get('compile')} | {r.get('float8', False)}"
        if r.get("status") == "ok":
            lines.append(f"| {mode} | {_f(r['step_ms'])} | {_f(r['tokens_per_s'])} | {_f(r['mfu'])} | "
                         f"{_f(r['pct_of_matmul'])} | {_f(r['peak_mem_gb'])} | {_f(r.get('syncs_per_step'))} | "
                         f"{_f(r.get('wh_per_mtok'))} | {_f(r.get('j_per_token'))} |")  # fmt: skip
        else:
            lines.append(f"| {mode} | {r.get('status')}: {r.get('reason', '')} | | | | | | | |")
    return [*lines, "", f"MFU: {doc['limits'].get('mfu_note')}; energy: {doc['limits'].get('energy')}"]


def scaling(doc: dict) -> list[str]:
    lines = ["Scaling (DDP, fixed batch per rank):", "",
             "| ranks | backend | model | step ms | tokens/s | efficiency |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in doc["rows"]:
        lines.append(f"| {r['ranks']} | {r['backend']} | {r['model']} | {_f(r.get('step_ms'))} | "
                     f"{_f(r.get('tokens_per_s'))} | {_f(r.get('efficiency'))} |")  # fmt: skip
    return lines


def limits_only(title: str, doc: dict) -> list[str]:
    return [f"{title}: " + "; ".join(f"{k} = {_f(v, 4)}" for k, v in doc["limits"].items())]


def _rows(root: Path, prefix: str) -> list[dict]:
    rows: list[dict] = []
    for path in sorted(root.glob(f"{prefix}*.json")):
        if path.stem.startswith("train_overhead"):
            continue
        doc = json.loads(path.read_text())
        rows += [{**r, "_file": path.stem} for r in doc.get("rows", [])]
    return rows


def check_kernels(root: Path) -> dict[str, tuple[str, str]]:
    """Verdicts of the kernel targets from kernels*.json: normia's Triton rows against the same run's limits and
    eager rows."""
    rows = [r for r in _rows(root, "kernels") if r.get("pass") == "fwd+bwd" and r.get("status") == "ok"]
    triton = [r for r in rows if r["provider"] == "triton"]
    out: dict[str, tuple[str, str]] = {}
    if not triton:
        why = "no Triton rows (no GPU, or the kernels step did not run)"
        return {k: (NOT_MEASURED, why) for k in ("bandwidth", "vs_eager", "flce_memory", "flce_time")}
    largest: dict[str, dict] = {}
    for r in triton:  # shapes run small to large: the last one of each kernel is its largest
        largest[r["kernel"]] = r
    pct = {k: r.get("pct_of_limit") for k, r in largest.items()}
    low = [k for k, v in pct.items() if v is None or v < TARGETS["bandwidth"].threshold]
    figure = ", ".join(f"{k} {v:.0f}%" if v is not None else f"{k} -" for k, v in pct.items())
    out["bandwidth"] = (MISS if low else PASS, figure + (f" (below: {', '.join(low)})" if low else ""))
    eager = {(r["kernel"], r["shape"]): r for r in rows if r["provider"] == "eager"}
    slower, compared = [], 0
    for r in triton:
        e = eager.get((r["kernel"], r["shape"]))
        if e and e.get("median_ms") and r.get("median_ms"):
            compared += 1
            speedup = e["median_ms"] / r["median_ms"]
            if speedup < TARGETS["vs_eager"].threshold:
                slower.append(f"{r['kernel']} {r['shape']} {speedup:.2f}x")
    if not compared:
        out["vs_eager"] = (NOT_MEASURED, "no eager rows beside the Triton ones")
    else:
        out["vs_eager"] = (MISS if slower else PASS, f"{compared - len(slower)}/{compared} shapes"
                           + (f"; slower: {', '.join(slower)}" if slower else ""))  # fmt: skip
    flce = {
        r["provider"]: r
        for r in rows
        if r["kernel"] == "fused_linear_cross_entropy" and r["shape"] == FLCE_SHAPE
    }
    if "triton" in flce and "eager" in flce:
        t, e = flce["triton"], flce["eager"]
        mem = t["peak_mem_mb"] / e["peak_mem_mb"] if t.get("peak_mem_mb") and e.get("peak_mem_mb") else None
        time_ratio = t["median_ms"] / e["median_ms"]
        out["flce_memory"] = (
            _verdict(mem, TARGETS["flce_memory"].threshold, below=True),
            f"{_f(mem, 2)} ({_f(t.get('peak_mem_mb'))} vs {_f(e.get('peak_mem_mb'))} MB)",
        )
        out["flce_time"] = (_verdict(time_ratio, TARGETS["flce_time"].threshold, below=True),
                            f"{time_ratio:.2f}x ({_f(t['median_ms'])} vs {_f(e['median_ms'])} ms)")  # fmt: skip
    else:
        why = f"no triton and eager rows at {FLCE_SHAPE}"
        out["flce_memory"] = out["flce_time"] = (NOT_MEASURED, why)
    return out


def _verdict(value: float | None, threshold: float, below: bool = False) -> str:
    if value is None:
        return NOT_MEASURED
    return PASS if (value <= threshold if below else value >= threshold) else MISS


def check_training(root: Path) -> dict[str, tuple[str, str]]:
    """MFU, float8, syncs and energy from train*.json (normia bench train) and normia_train.json."""
    rows = _rows(root, "train")
    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, tuple[str, str]] = {}
    big = [r for r in ok if r.get("model") == "1b" and not r.get("float8")]
    with_mfu = [r for r in big if r.get("mfu") is not None]
    if with_mfu:
        best = max(with_mfu, key=lambda r: r["mfu"])
        mode = "compiled" if best.get("compile") else "eager"
        out["mfu"] = (_verdict(best["mfu"], TARGETS["mfu"].threshold),
                      f"{100 * best['mfu']:.1f}% ({mode}, {_f(best['tokens_per_s'])} tokens/s, {best['_file']})")  # fmt: skip
    else:
        out["mfu"] = (
            NOT_MEASURED,
            "no 1b row with MFU (a CPU has no bf16 peak in the table)" if ok else "no rows",
        )
    f8 = [r for r in rows if r.get("float8") is True]
    pairs = []
    for r in (r for r in f8 if r.get("status") == "ok"):
        base = [b for b in ok if not b.get("float8") and b["model"] == r["model"] and b.get("compile") == r.get("compile")
                and b["_file"] == r["_file"]]  # fmt: skip
        if base:
            pairs.append((r, base[0], r["tokens_per_s"] / base[0]["tokens_per_s"]))
    if pairs:
        r, b, ratio = pairs[-1]
        out["float8"] = (_verdict(ratio, TARGETS["float8"].threshold) if ratio != 1.0 else MISS,
                         f"{ratio:.2f}x ({_f(r['tokens_per_s'])} vs {_f(b['tokens_per_s'])} tokens/s, {r['model']}, "
                         f"compile={r.get('compile')})")  # fmt: skip
    else:
        reason = next((r.get("reason") for r in f8 if r.get("reason")), "no float8 row")
        out["float8"] = (NOT_MEASURED, str(reason)[:240])
    syncs = [
        (r["_file"] + " " + str(r["model"]), r["syncs_per_step"])
        for r in ok
        if r.get("syncs_per_step") is not None
    ]
    normia = _load(root, "normia_train")
    syncs += [(f"normia train {r['run']}", r["syncs_per_step"]) for r in (normia or {}).get("rows", [])
              if r.get("syncs_per_step") is not None]  # fmt: skip
    if syncs:
        worst = max(v for _, v in syncs)
        bench = [(n, v) for n, v in syncs if not n.startswith("normia train")]
        parts = [f"bench loop max {_f(max(v for _, v in bench), 2)} ({len(bench)} rows)"] if bench else []
        parts += [f"{n}: {_f(v, 2)}" for n, v in syncs if n.startswith("normia train")]
        out["syncs"] = (PASS if worst <= TARGETS["syncs"].threshold else MISS, "; ".join(parts))
    else:
        counted = any("syncs_per_step" in r for r in ok)  # the column exists: it was a CPU (no such mode)
        out["syncs"] = (
            NOT_MEASURED,
            "set_sync_debug_mode needs CUDA" if counted else "not counted in this run",
        )
    energy = [r for r in ok if r.get("wh_per_mtok") is not None and not r.get("float8")]
    if energy:
        out["energy"] = (PASS, ", ".join(f"{r['model']} {_f(r['wh_per_mtok'])}" for r in energy) + " Wh/Mtok")
    else:
        note = next((json.loads(p.read_text())["limits"].get("energy") for p in sorted(root.glob("train*.json"))
                     if not p.stem.startswith("train_overhead")), None)  # fmt: skip
        out["energy"] = (NOT_MEASURED, str(note or "no train rows")[:240])
    out.update(check_normia_train(normia))
    return out


def check_normia_train(doc: dict | None) -> dict[str, tuple[str, str]]:
    """The normia-train step's checks (benchmarks/gpu/normia_train.py)."""
    if not doc:
        return {
            k: (NOT_MEASURED, "no normia_train.json") for k in ("normia_loss", "normia_fsdp", "normia_resume")
        }
    rows = {r["run"]: r for r in doc.get("rows", [])}
    checks = doc.get("checks", {})

    def perf(name: str) -> str:
        r = rows.get(name)
        if not r:
            return f"{name}: not run"
        if r.get("exit_code") != 0:
            return f"{name}: exit {r.get('exit_code')}" + (f" ({r['error'][:100]})" if r.get("error") else "")
        return f"{name} {_f(r.get('tokens_per_s'))} tok/s, {_f(r.get('peak_mem_gb'))} GB"

    loss = checks.get("loss_curves")
    if isinstance(loss, dict) and loss.get("max_gap_nats") is not None:
        verdict = PASS if loss.get("ok") else MISS
        rel = loss.get("max_relative_gap")
        text = (
            f"max gap {_f(loss['max_gap_nats'], 2)} nats, {_f(None if rel is None else 100 * rel, 2)}% "
            f"(<= {_f(100 * (doc.get('loss_tolerance_relative') or 0), 2)}%); {perf('triton')}; {perf('torch')}"
        )
    else:
        verdict, text = NOT_MEASURED, f"{perf('triton')}; {perf('torch')}"
    out = {"normia_loss": (verdict, text)}
    fsdp = checks.get("fsdp")
    out["normia_fsdp"] = (
        (PASS if fsdp.get("ok") else MISS) if isinstance(fsdp, dict) else NOT_MEASURED,
        perf("fsdp"),
    )
    resume = checks.get("resume")
    if isinstance(resume, dict):
        out["normia_resume"] = (PASS if resume.get("ok") else MISS,
                                f"{checks.get('ctrl_c', '')}; final step {resume.get('final_step')}")  # fmt: skip
    else:
        out["normia_resume"] = (NOT_MEASURED, str(checks.get("ctrl_c") or checks.get("resume") or "not run"))
    if str(doc.get("device", "")).startswith("cpu"):
        # The script's CPU mode: llama_tiny, kernels=torch for both "kernel" runs, no GPU. It checks the script,
        # not a target: never a PASS or MISS.
        out = {
            k: (NOT_MEASURED, f"CPU check of the script only ({doc['device']}): {v[1]}")
            for k, v in out.items()
        }
    return out


def check_checkpoint(doc: dict | None) -> dict[str, tuple[str, str]]:
    """The checkpoint step's goals (benchmarks/checkpoint.py), for its largest preset; a CPU run is a check of the
    script only."""
    if not doc or not doc.get("goals"):
        return {k: (NOT_MEASURED, "no checkpoint.json") for k in ("ckpt_async", "ckpt_total")}
    goal = doc["goals"][-1]
    where = f"{goal['preset']}, {doc.get('device', '?')}"
    async_ratio, total_ratio = goal.get("async_blocking_over_sync_total"), goal["sharded_total_over_disk"]
    out = {
        "ckpt_async": (_verdict(async_ratio, TARGETS["ckpt_async"].threshold, below=True),
                       f"{100 * async_ratio:.1f}% ({where})" if async_ratio is not None else "async not run"),
        "ckpt_total": (_verdict(total_ratio, TARGETS["ckpt_total"].threshold, below=True),
                       f"{total_ratio:.2f}x ({where})"),
    }  # fmt: skip
    if "nccl" not in str(doc.get("device", "")):
        out = {k: (NOT_MEASURED, f"CPU run: {v[1]}") for k, v in out.items()}
    return out


def targets(root: Path) -> list[str]:
    """One screen: one line per target, its figure, its verdict."""
    found = {**check_kernels(root), **check_training(root), **check_checkpoint(_load(root, "checkpoint"))}
    lines = ["| target | figure | verdict |", "| --- | --- | --- |"]
    for key, target in TARGETS.items():
        verdict, figure = found.get(key, (NOT_MEASURED, ""))
        lines.append(f"| {target.text} | {figure.replace('|', '/')} | **{verdict}** |")
    counts = {
        v: sum(1 for k in TARGETS if found.get(k, (NOT_MEASURED,))[0] == v)
        for v in (PASS, MISS, NOT_MEASURED)
    }
    return [*lines, "", ", ".join(f"{n} {v}" for v, n in counts.items())]


def main(folder: str, targets_only: bool = False) -> int:
    root = Path(folder)
    parts: list[list[str]] = []
    first = None
    for prefix, render in (("kernels", kernels), ("train", train), ("scaling", scaling)):
        for path in sorted(root.glob(f"{prefix}*.json")):
            if path.stem.startswith("train_overhead"):  # its own summary line below
                continue
            doc = json.loads(path.read_text())
            first = first or doc
            parts.append([f"`{path.name}`:", *render(doc)])
    normia_md = root / "normia_train.md"
    if normia_md.exists():
        parts.append(normia_md.read_text().strip().splitlines())
    for name, title in (("train_overhead", "normia train overhead (steps/s)"), ("startup", "CLI start-up")):
        doc = _load(root, name)
        if doc:
            first = first or doc
            parts.append(limits_only(title, doc))
    if first is None:
        print(f"no results in {root}", file=sys.stderr)
        return 1
    print(f"### {first['device']} ({first['date'][:10]}, torch {first['torch']}, `{root.name}/`)\n")
    print("\n".join(targets(root)))
    if not targets_only:
        print("\n\n" + "\n\n".join("\n".join(p) for p in parts))
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--targets"]
    sys.exit(main(args[0] if args else ".", targets_only="--targets" in sys.argv[1:]))
