"""Start-up cost of the CLI (issue 2, "Measure"): wall time of `normia --help` against `python -c "import torch"`
on the same machine, alternating the two. Target: normia --help < 0.5 x import torch.

Issue 10: `--project DIR` runs the commands inside a project folder (normia init's layout), and `--baseline-src SRC`
times an earlier checkout's `src/` in the same loop (`python -m normia.cli` for both, PYTHONPATH=SRC for the
baseline). Target: `normia --help` and `normia train --help` inside a project within 1.10 x the baseline.

    python benchmarks/startup.py [--repeats 10] [--project DIR] [--baseline-src SRC] [--out benchmarks/results/cpu-<date>]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall_time(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, cwd=cwd, env=env
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/cpu-<date>)")
    parser.add_argument(
        "--project", type=Path, default=None, help="run the commands inside this project folder"
    )
    parser.add_argument(
        "--baseline-src", type=Path, default=None, help="an earlier checkout's src/ to time in the same loop"
    )
    args = parser.parse_args()
    import torch

    from normia.bench.device import describe, provenance
    from normia.bench.results import ResultsWriter

    normia = shutil.which("normia") or str(Path(sys.executable).with_name("normia"))
    commands = {
        "normia --help": [normia, "--help"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    envs: dict[str, dict[str, str] | None] = {}
    if args.baseline_src is not None:
        module = [sys.executable, "-m", "normia.cli"]
        old_env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
        for label, argv in (("--help", ["--help"]), ("train --help", ["train", "--help"])):
            commands[f"python -m normia.cli {label}"] = [*module, *argv]
            commands[f"baseline: python -m normia.cli {label}"] = [*module, *argv]
            envs[f"baseline: python -m normia.cli {label}"] = old_env
    cwd = args.project.resolve() if args.project else None
    for name, cmd in commands.items():  # warm the OS file cache for all before timing
        wall_time(cmd, cwd, envs.get(name))
    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    out = Path(args.out or REPO / "benchmarks" / "results" / f"cpu-{date}")
    meta = {
        **provenance(describe(torch.device("cpu"))),
        "normia_executable": normia,
        "cwd": str(cwd or Path.cwd()),
        "baseline_src": str(args.baseline_src or ""),
    }
    writer = ResultsWriter(out, "startup", meta, ("command", "repeat", "wall_s"))
    times: dict[str, list[float]] = {name: [] for name in commands}
    status = "failed"
    try:
        for repeat in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(wall_time(cmd, cwd, envs.get(name)))
                writer.add({"command": name, "repeat": repeat, "wall_s": times[name][-1]})
        medians = {name: statistics.median(t) for name, t in times.items()}
        ratio = medians["normia --help"] / medians["python -c 'import torch'"]
        limits: dict[str, object] = {
            **{f"median_s: {k}": v for k, v in medians.items()},
            "ratio": ratio,
            "target": "< 0.5",
        }
        for label in ("--help", "train --help") if args.baseline_src is not None else ():
            now, then = f"python -m normia.cli {label}", f"baseline: python -m normia.cli {label}"
            limits[f"ratio to baseline: {label}"] = medians[now] / medians[then]
        if args.baseline_src is not None:
            limits["target to baseline"] = "<= 1.10"
        writer.set_limits(limits)
        status = "complete"
    finally:
        writer.finish(status)
    print(writer.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
