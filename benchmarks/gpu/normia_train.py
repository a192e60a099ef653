"""The `normia-train` step of benchmarks/gpu/run_all.sh: `normia train` itself (Hydra -> Lightning, bf16, FSDP2,
checkpoints, resume) on one GPU, on the ~125M LLaMA preset (configs/experiment/gpu_llama_125m.yaml), a few dozen
steps per run:

  triton   kernels=triton                 the Triton path of normia.ops
  torch    kernels=torch                  the PyTorch reference, same seed: same loss curve within bf16 tolerance
  resume   kernels=triton, Ctrl-C (SIGINT) after --stop-at steps (exit 130, last.ckpt), then `resume=<dir>` to the end
  fsdp     trainer=fsdp, one GPU          FSDP2 (fully_shard through Lightning's ModelParallelStrategy)

Each run goes through benchmarks/gpu/train_probe.py (loss of every step, peak GPU memory, syncs per step); tokens/s
is done.json's (normia's Throughput callback: training batches only, host clock). Results: <out>/normia_train.json
and .md, rewritten after every run, so a run cut by the step's time limit keeps the ones before it. Checkpoints go
to --runs (not into the results folder, which is tarred).

    python benchmarks/gpu/normia_train.py --out RESULTS [--tiny] [--budget S]

--tiny: the same runs on a CPU (llama_tiny, 64-token sequences, kernels=torch twice, trainer.accelerator=cpu), to
check the step end to end on a machine without a GPU. Imports nothing heavy: the runs are subprocesses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = HERE / "train_probe.py"
# bf16 mixed precision: the two kernel paths round differently (and a bf16 loss near 8 has a spacing of 0.03 nats),
# so the curves are compared relatively: |a - b| <= 1% of the loss at every step (bf16 operands give relative errors
# of 1e-3 to 1e-2). The loss falls by ~5 nats over the run, so a wrong kernel shows far above that.
LOSS_TOLERANCE = 0.01


def base_overrides(tiny: bool, steps: int) -> list[str]:
    common = ["experiment=gpu_llama_125m", f"trainer.max_steps={steps}"]
    if tiny:
        return [*common, "model=llama_tiny", "data.vocab_size=16", "data.input_shape=[64]",
                "model.max_seq_len=64", "trainer.precision=bf16-mixed", "energy=off"]  # fmt: skip
    return common


def runs(tiny: bool) -> list[tuple[str, list[str]]]:
    """(name, extra overrides), most valuable first."""
    fast = (
        "torch" if tiny else "triton"
    )  # Triton's GPU path has no CPU driver: the CPU check runs the reference
    single = ["trainer=cpu"] if tiny else []  # the experiment's trainer is gpu (one GPU, bf16-mixed)
    fsdp = ["trainer=fsdp", "trainer.devices=1"]  # the fsdp group is CPU-based (32-true): bf16 as on one GPU
    fsdp += (
        ["trainer.accelerator=cpu"] if tiny else ["trainer.accelerator=gpu", "trainer.precision=bf16-mixed"]
    )
    return [
        ("triton", [f"kernels={fast}", *single]),
        ("torch", ["kernels=torch", *single]),
        ("resume", [f"kernels={fast}", *single]),
        ("fsdp", [f"kernels={fast}", *fsdp]),
    ]


def run_probe(args: list[str], out: Path, env: dict, timeout: float, stop_at: int | None = None) -> dict:
    """Run the probe; with stop_at, send SIGINT once it has done that many steps. Returns its record + timing."""
    progress = out.with_suffix(".progress")
    progress.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    env = {**env, "PROBE_OUT": str(out), "PROBE_PROGRESS": str(progress)}
    cmd = [sys.executable, str(PROBE), *args]
    print("$", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    errors = out.with_suffix(".stderr")
    with errors.open("w") as err_file:  # a file, not a pipe: a full pipe would block the run
        proc = subprocess.Popen(cmd, env=env, stderr=err_file)
    interrupted_at = None
    try:
        while proc.poll() is None:
            if time.monotonic() - t0 > timeout:
                proc.send_signal(signal.SIGINT)  # normia stops at the next step and saves; then the hard kill
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            if stop_at is not None and interrupted_at is None and progress.exists():
                text = progress.read_text().strip()
                if text.isdigit() and int(text) >= stop_at:
                    proc.send_signal(signal.SIGINT)
                    interrupted_at = int(text)
            time.sleep(0.05)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    err_text = errors.read_text(errors="replace")
    sys.stderr.write(err_text)
    record = json.loads(out.read_text()) if out.exists() else {"losses": [], "steps": []}
    record.update(exit_code=code, wall_s=time.monotonic() - t0, interrupted_at=interrupted_at)
    if code not in (
        0,
        130,
    ):  # the one-line reason normia gives (error: ...), or the last line of the traceback
        lines = [line for line in err_text.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("error:")]
        record["error"] = (said or lines or ["no output"])[-1][:200]
    return record


def done_json(output_dir: Path) -> dict:
    path = output_dir / "done.json"
    return json.loads(path.read_text()) if path.exists() else {}


def row_of(name: str, extra: list[str], record: dict, done: dict) -> dict:
    losses = record.get("losses") or []
    return {
        "run": name,
        "overrides": " ".join(extra),
        "exit_code": record.get("exit_code"),
        "steps": done.get("global_step", (record.get("steps") or [None])[-1]),
        "tokens_per_s": (done.get("throughput") or {}).get("tokens_per_s"),
        "peak_mem_gb": record.get("peak_mem_gb"),
        "syncs_per_step": record.get("syncs_per_step"),
        "syncs_note": record.get("syncs_note"),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "wall_s": record.get("wall_s"),
        "error": record.get("error"),
        "losses": losses,
        "loss_steps": record.get("steps") or [],
    }


def max_loss_gap(a: dict, b: dict, from_step: int = 0, relative: bool = False) -> float | None:
    """Largest |loss_a - loss_b| (or, relative, that over max(|loss_a|, |loss_b|)) over the steps both recorded
    (global step > from_step); None if none."""
    la = dict(zip(a.get("loss_steps") or [], a.get("losses") or []))
    lb = dict(zip(b.get("loss_steps") or [], b.get("losses") or []))
    common = [s for s in la if s in lb and s > from_step]
    if not common:
        return None
    if relative:
        return max(abs(la[s] - lb[s]) / max(abs(la[s]), abs(lb[s]), 1e-12) for s in common)
    return max(abs(la[s] - lb[s]) for s in common)


def write(out: Path, doc: dict) -> None:
    (out / "normia_train.json").write_text(json.dumps(doc, indent=1, allow_nan=False, default=str))
    lines = [f"## normia train on {doc['device']} ({doc['date'][:10]}): {doc['model']}, {doc['steps']} steps", "",
             "| run | overrides | exit | steps | tokens/s | peak GB | syncs/step | first loss | last loss | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in doc["rows"]:
        cells = [r["run"], r["overrides"], r["exit_code"], r["steps"], r["tokens_per_s"], r["peak_mem_gb"],
                 r["syncs_per_step"], r["first_loss"], r["last_loss"], r["wall_s"]]  # fmt: skip
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += ["", *(f"- {k}: {_fmt(v)}" for k, v in doc["checks"].items())]
    (out / "normia_train.md").write_text("\n".join(lines) + "\n")


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="results folder (normia_train.json/.md go there)")
    p.add_argument("--runs", default=os.environ.get("NORMIA_TRAIN_RUNS", "/tmp/normia_train_runs"),
                   help="where the runs' folders and checkpoints go")  # fmt: skip
    p.add_argument("--tiny", action="store_true", help="CPU check: llama_tiny, kernels=torch")
    p.add_argument(
        "--steps", type=int, default=None, help="steps per run (default 30 on GPU, 20 with --tiny)"
    )
    p.add_argument("--stop-at", type=int, default=None, help="Ctrl-C after this many steps (default steps/2)")
    p.add_argument(
        "--budget", type=float, default=150.0, help="seconds for all runs; later runs get what is left"
    )
    a = p.parse_args(argv)
    steps = a.steps or (20 if a.tiny else 30)
    stop_at = a.stop_at or steps // 2
    out, root = Path(a.out), Path(a.runs)
    out.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("NORMIA_OUTPUT_ROOT", str(root))
    # the sync window: steady state (after warm-up and the Triton JIT), log_every_n_steps steps long
    env["PROBE_SYNC_WINDOW"] = "2:2" if a.tiny else "10:10"
    started = time.monotonic()
    doc: dict = {"device": "cpu (tiny check)" if a.tiny else _gpu_name(), "date": _now(),
                 "model": "llama_tiny" if a.tiny else "llama_125m (configs/model/llama_125m.yaml)", "steps": steps,
                 "tokens_per_s_source": "done.json throughput (normia's Throughput callback: training batches, host clock)",
                 "loss_tolerance_relative": LOSS_TOLERANCE, "rows": [], "checks": {}}  # fmt: skip
    by_name: dict[str, dict] = {}
    for name, extra in runs(a.tiny):
        left = a.budget - (time.monotonic() - started)
        if left < 15:
            doc["checks"][f"{name}"] = f"not run: {a.budget:g} s budget spent"
            write(out, doc)
            continue
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)  # a fresh run (resume below continues this one only)
        args = [*base_overrides(a.tiny, steps), *extra, f"paths.output_dir={folder}", "seed=42"]
        if name == "resume":
            first = run_probe(args, root / "resume_stop.json", env, left, stop_at=stop_at)
            reached = max(first.get("steps") or [0])
            stopped_ok = (first["exit_code"] == 130 and (folder / "checkpoints" / "last.ckpt").exists()
                          and reached < steps)  # fmt: skip
            doc["checks"]["ctrl_c"] = (f"SIGINT at step {first['interrupted_at']}, stopped after step {reached} of "
                                       f"{steps}: exit {first['exit_code']}, last.ckpt "
                                       f"{'written' if (folder / 'checkpoints' / 'last.ckpt').exists() else 'MISSING'}")  # fmt: skip
            left = a.budget - (time.monotonic() - started)
            record = run_probe([*args, f"resume={folder}"], root / "resume.json", env, left)
            record["losses"] = first.get("losses", []) + record.get("losses", [])
            record["steps"] = first.get("steps", []) + record.get("steps", [])
            record["stopped_ok"] = stopped_ok
        else:
            record = run_probe(args, root / f"{name}.json", env, left)
        row = row_of(name, extra, record, done_json(folder))
        by_name[name] = row
        doc["rows"].append(row)
        if name == "torch" and "triton" in by_name:
            gap = max_loss_gap(by_name["triton"], row)
            rel = max_loss_gap(by_name["triton"], row, relative=True)
            ok = rel is not None and rel <= LOSS_TOLERANCE
            doc["checks"]["loss_curves"] = {
                "max_gap_nats": gap,
                "max_relative_gap": rel,
                "ok": ok,
                "what": "kernels=triton vs kernels=torch, every step",
            }
        if name == "resume":
            gap = max_loss_gap(by_name.get("triton", {}), row, from_step=stop_at)
            resumed = row["exit_code"] == 0 and row["steps"] == steps and record.get("stopped_ok")
            doc["checks"]["resume"] = {"ok": bool(resumed), "final_step": row["steps"],
                                       "max_gap_after_resume_nats": gap,
                                       "what": f"Ctrl-C at >= step {stop_at}, exit 130, resume to step {steps}"}  # fmt: skip
        if name == "fsdp":
            doc["checks"]["fsdp"] = {"ok": row["exit_code"] == 0 and row["steps"] == steps}
        write(out, doc)
    print((out / "normia_train.md").read_text())
    failed = [r["run"] for r in doc["rows"] if r["exit_code"] != 0]
    return 1 if failed else 0


def _gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)  # fmt: skip
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown GPU"


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
