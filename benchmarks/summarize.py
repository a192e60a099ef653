"""A short markdown summary of one results folder, for benchmarks/README.md's "Latest results per device".

    python benchmarks/summarize.py benchmarks/results/<device>-<date>

Kernels: forward+backward at each kernel's largest measured shape, per provider (time, % of the measured limit, peak
memory). Train, scaling, overhead and start-up: their main figures. Reads only the JSON files the benchmarks wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
            lines.append(f"| {kernel} | {largest} | {r['provider']} | {_f(r['median_ms'])} ({_f(r['p20_ms'])}-"
                         f"{_f(r['p80_ms'])}) | {_f(r['pct_of_limit'])} | {_f(r['peak_mem_mb'])} |")  # fmt: skip
    return lines


def train(doc: dict) -> list[str]:
    lines = ["Training (plain PyTorch loop, synthetic tokens):", "",
             "| model | params | compile | step ms | tokens/s | MFU | % of matmul | peak GB | Wh/Mtok | J/token |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in doc["rows"]:
        if r["status"] == "ok":
            lines.append(f"| {r['model']} | {_f(r['params'])} | {r['compile']} | {_f(r['step_ms'])} | "
                         f"{_f(r['tokens_per_s'])} | {_f(r['mfu'])} | {_f(r['pct_of_matmul'])} | "
                         f"{_f(r['peak_mem_gb'])} | {_f(r.get('wh_per_mtok'))} | {_f(r.get('j_per_token'))} |")  # fmt: skip
        else:
            lines.append(
                f"| {r['model']} | | {r['compile']} | {r['status']}: {r.get('reason', '')} | | | | | | |"
            )
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


def main(folder: str) -> int:
    root = Path(folder)
    parts: list[list[str]] = []
    first = None
    for prefix, render in (("kernels", kernels), ("train", train), ("scaling", scaling)):
        for path in sorted(root.glob(f"{prefix}*.json")):
            if path.stem == "train_overhead":
                continue
            doc = json.loads(path.read_text())
            first = first or doc
            parts.append([f"`{path.name}`:", *render(doc)])
    for name, title in (("train_overhead", "normia train overhead (steps/s)"), ("startup", "CLI start-up")):
        doc = _load(root, name)
        if doc:
            first = first or doc
            parts.append(limits_only(title, doc))
    if first is None:
        print(f"no results in {root}", file=sys.stderr)
        return 1
    print(f"### {first['device']} ({first['date'][:10]}, torch {first['torch']}, `{root.name}/`)\n")
    print("\n\n".join("\n".join(p) for p in parts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
