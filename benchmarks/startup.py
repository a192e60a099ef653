"""Start-up cost of the CLI (issue 2, "Measure"): wall time of `normia --help` against `python -c "import torch"`
on the same machine, alternating the two. Target: normia --help < 0.5 x import torch.

    python benchmarks/startup.py [--repeats 10] [--out benchmarks/results/cpu-<date>]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/cpu-<date>)")
    args = parser.parse_args()
    import torch

    from normia.bench.device import describe, provenance
    from normia.bench.results import ResultsWriter

    normia = shutil.which("normia") or str(Path(sys.executable).with_name("normia"))
    commands = {
        "normia --help": [normia, "--help"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    for cmd in commands.values():  # warm the OS file cache for both before timing
        wall_time(cmd)
    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    out = Path(args.out or REPO / "benchmarks" / "results" / f"cpu-{date}")
    meta = {**provenance(describe(torch.device("cpu"))), "normia_executable": normia}
    writer = ResultsWriter(out, "startup", meta, ("command", "repeat", "wall_s"))
    times: dict[str, list[float]] = {name: [] for name in commands}
    status = "failed"
    try:
        for repeat in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(wall_time(cmd))
                writer.add({"command": name, "repeat": repeat, "wall_s": times[name][-1]})
        medians = {name: statistics.median(t) for name, t in times.items()}
        ratio = medians["normia --help"] / medians["python -c 'import torch'"]
        writer.set_limits(
            {**{f"median_s: {k}": v for k, v in medians.items()}, "ratio": ratio, "target": "< 0.5"}
        )
        status = "complete"
    finally:
        writer.finish(status)
    print(writer.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
