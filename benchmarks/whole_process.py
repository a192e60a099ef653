"""Whole-process cost of `normia train experiment=quickstart` against a plain PyTorch script doing the same work
(benchmarks/plain_quickstart.py), both started from the shell as new processes (issue 15). Target: normia <= 1.5x.

    python benchmarks/whole_process.py [--repeats 5] [--threads 1] [--out benchmarks/results/cpu-<date>]

Each repeat runs, in turn, each variant in a fresh empty working folder (so MLflow's embedded store sqlite:///mlflow.db
is created by the run, as in the README's quickstart) and times the process from start to exit:
- plain: `python benchmarks/plain_quickstart.py` (training, validation, metrics.csv, checkpoints; no MLflow);
- normia train: `normia train experiment=quickstart`, as the README runs it (a new mlflow.db, made from the empty
  store template that normia keeps in its cache after its first run on a machine);
- normia train, mlflow.db exists: the same in a folder whose mlflow.db an earlier run created (a user's second run);
- normia train, first on this machine: a new mlflow.db and no template yet (MLflow's migrations run, ~2 s);
- normia train, logger=none: without MLflow, to show what tracking costs.
torch's threads are set to --threads for every process (OMP_NUM_THREADS): on a shared 2-core machine more threads
make the timing noisy. Ratio = median normia time / median plain time, over the repeats of this one run, for the
wall time and for the CPU time (user + system) of the process.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLAIN = "plain"


def _normia_command() -> list[str]:
    script = Path(sys.executable).with_name("normia")
    return [str(script)] if script.exists() else [sys.executable, "-m", "normia.cli"]


def variants(baseline: str | None = None) -> dict[str, tuple[list[str], str]]:
    """name -> (command, state of the folder and cache: 'new' folder, 'db' (an mlflow.db from an earlier run) or
    'cold' (a new folder and no store template in normia's cache: a first run on a machine))."""
    normia = [*_normia_command(), "train", "experiment=quickstart"]
    return {
        PLAIN: ([sys.executable, str(REPO / "benchmarks" / "plain_quickstart.py")], "new"),
        "normia train": (normia, "new"),
        "normia train, mlflow.db exists": (normia, "db"),
        "normia train, first on this machine (no store template)": (normia, "cold"),
        "normia train, logger=none": ([*normia, "logger=none"], "new"),
        **({f"normia train at {baseline}": (normia, "old")} if baseline else {}),
    }


def time_process(command: list[str], folder: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds from start to exit, CPU seconds user+system) of the command run in folder; raises if it fails.
    The CPU time is less sensitive than the wall time to other work on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of every process")
    parser.add_argument("--name", default="whole_process", help="results file stem")
    parser.add_argument(
        "--baseline", default=None, metavar="COMMIT",
        help="also time normia train as of this commit (its src/ from git archive, first in PYTHONPATH)",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/cpu-<date>)")
    args = parser.parse_args()
    import torch

    from normia.bench.device import describe, provenance
    from normia.bench.results import ResultsWriter

    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    out = Path(args.out or REPO / "benchmarks" / "results" / f"cpu-{date}")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NORMIA_OUTPUT_ROOT")}
    env.update({"OMP_NUM_THREADS": str(args.threads), "PYTHONDONTWRITEBYTECODE": "1"})
    meta = {**provenance(describe(torch.device("cpu"))), "threads": args.threads, "repeats": args.repeats,
            "commands": {name: " ".join(cmd) for name, (cmd, _) in variants(args.baseline).items()},
            "plain script": "benchmarks/plain_quickstart.py: training, per-epoch validation, metrics.csv, "
                            "last.pt/best.pt, metrics.json; no MLflow"}  # fmt: skip
    writer = ResultsWriter(out, args.name, meta, ("variant", "repeat", "wall_s", "cpu_s"))
    runs = variants(args.baseline)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    status = "failed"
    with tempfile.TemporaryDirectory() as tmp:
        seeded = Path(tmp) / "seeded"  # a folder whose mlflow.db an earlier normia run made
        seeded.mkdir()
        subprocess.run([*_normia_command(), "train", "experiment=quickstart", "trainer.max_steps=1"],
                       cwd=seeded, env=env, capture_output=True, check=True)  # fmt: skip
        old_env = dict(env)
        if args.baseline:  # that commit's normia, first on the path (its configs and kernels come with src/)
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], capture_output=True,
                                     check=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            old_env["PYTHONPATH"] = str(Path(tmp) / "src")
        try:
            for repeat in range(args.repeats):
                for name, (command, state) in runs.items():
                    folder = Path(tmp) / f"{repeat}-{len(times[name])}-{abs(hash(name))}"
                    folder.mkdir()
                    if state == "db":
                        shutil.copy(seeded / "mlflow.db", folder / "mlflow.db")
                    run_env = {**env, "NORMIA_CACHE_DIR": str(folder / "cache")} if state == "cold" else env
                    run_env = old_env if state == "old" else run_env
                    wall, cpu = time_process(command, folder, run_env)
                    times[name].append(wall)
                    cpus[name].append(cpu)
                    writer.add({"variant": name, "repeat": repeat, "wall_s": wall, "cpu_s": cpu})
                    shutil.rmtree(folder, ignore_errors=True)
            plain, plain_cpu = statistics.median(times[PLAIN]), statistics.median(cpus[PLAIN])
            limits: dict[str, object] = {"plain: median wall s": plain, "plain: median cpu s": plain_cpu}
            for name, values in times.items():
                if name != PLAIN:
                    limits[f"{name}: median wall s"] = statistics.median(values)
                    limits[f"ratio (wall): {name} / plain"] = statistics.median(values) / plain
                    limits[f"ratio (cpu): {name} / plain"] = statistics.median(cpus[name]) / plain_cpu
            limits["target"] = "normia train / plain <= 1.5"
            writer.set_limits(limits)
            status = "complete"
        finally:
            writer.finish(status)
    print(writer.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
