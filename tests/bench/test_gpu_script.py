"""The GPU script's parts that run here: the one-screen verdicts of benchmarks/summarize.py (thresholds from its
TARGETS table), the wheel-set check of benchmarks/gpu/check_wheels.py, and the loss-curve comparison of
benchmarks/gpu/normia_train.py (issue 15)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(relative: str) -> ModuleType:
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"gpu_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


summarize = _load("benchmarks/summarize.py")
check_wheels = _load("benchmarks/gpu/check_wheels.py")
normia_train = _load("benchmarks/gpu/normia_train.py")


def _kernel(kernel: str, shape: str, provider: str, ms: float, pct: float, mb: float = 100.0) -> dict:
    return {"kernel": kernel, "shape": shape, "provider": provider, "pass": "fwd+bwd", "status": "ok",
            "median_ms": ms, "p20_ms": ms, "p80_ms": ms, "pct_of_limit": pct, "peak_mem_mb": mb, "dtype": "bfloat16"}  # fmt: skip


def _train(
    model: str, mfu: float | None, tokens: float, float8: bool = False, syncs: float | None = 0.0
) -> dict:
    return {"model": model, "params": 1, "compile": "blocks", "float8": float8, "status": "ok", "step_ms": 1.0,
            "tokens_per_s": tokens, "mfu": mfu, "pct_of_matmul": 50.0, "peak_mem_gb": 1.0, "syncs_per_step": syncs,
            "wh_per_mtok": 3.0, "j_per_token": 0.01}  # fmt: skip


def _write(folder: Path, name: str, rows: list[dict], limits: dict) -> None:
    doc = {
        "device": "NVIDIA H200",
        "date": "2026-12-01T00:00:00",
        "torch": "2.11",
        "limits": limits,
        "rows": rows,
    }
    (folder / f"{name}.json").write_text(json.dumps(doc))


def test_targets_screen_has_one_line_per_target_with_the_verdict_its_threshold_gives(tmp_path: Path) -> None:
    flce = "8192x4096x128256"
    _write(tmp_path, "kernels", [
        _kernel("rms_norm", "4096x1024", "triton", 0.2, 30.0), _kernel("rms_norm", "4096x1024", "eager", 0.1, 60.0),
        _kernel("rms_norm", "32768x8192", "triton", 1.0, 90.0), _kernel("rms_norm", "32768x8192", "eager", 9.0, 10.0),
        _kernel("fused_linear_cross_entropy", flce, "triton", 43.0, 86.0, mb=1200.0),
        _kernel("fused_linear_cross_entropy", flce, "eager", 41.0, 90.0, mb=6000.0),
    ], {"copy_gbps": 4250.0, "matmul_tflops": 730.0})  # fmt: skip
    _write(tmp_path, "train", [_train("1b", 0.499, 6.0e4), _train("125m", 0.2, 2.7e5)], {"energy": "nvml"})
    _write(tmp_path, "train_float8", [_train("1b", 0.4, 6.0e4), _train("1b", None, 7.2e4, float8=True, syncs=2.0)],
           {"energy": "nvml"})  # fmt: skip
    lines = summarize.targets(tmp_path)
    assert lines[-1] == "6 PASS, 2 MISS, 5 NOT MEASURED"
    normia_rows = [{"run": "triton", "exit_code": 0, "tokens_per_s": 3e5, "peak_mem_gb": 9.0, "syncs_per_step": 0.0},
                   {"run": "fsdp", "exit_code": 2, "error": "error: trainer.strategy=fsdp needs at least 2 processes"}]  # fmt: skip
    checks = {"loss_curves": {"max_gap_nats": 0.01, "max_relative_gap": 0.002, "ok": True}, "fsdp": {"ok": False},
              "ctrl_c": "SIGINT at step 15", "resume": {"ok": True, "final_step": 30}}  # fmt: skip
    (tmp_path / "normia_train.json").write_text(json.dumps({"rows": normia_rows, "checks": checks,
                                                            "loss_tolerance_relative": 0.01}))  # fmt: skip
    goals = [{"preset": "1b", "async_blocking_over_sync_total": 0.04, "sharded_total_over_disk": 1.7}]
    (tmp_path / "checkpoint.json").write_text(
        json.dumps({"device": "x86_64, nccl x 1 ranks", "goals": goals})
    )
    lines = summarize.targets(tmp_path)
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(summarize.TARGETS)
    verdict = {key: row.rsplit("**", 2)[-2] for key, row in zip(summarize.TARGETS, rows)}
    assert verdict["bandwidth"] == "PASS"  # 90 and 86 >= 85 at the largest shapes
    assert verdict["vs_eager"] == "MISS" and "rms_norm 4096x1024 0.50x" in rows[1]
    assert verdict["flce_memory"] == "PASS" and verdict["flce_time"] == "PASS"  # 0.2 <= 0.25, 1.05x <= 1.1x
    assert verdict["mfu"] == "PASS" and "49.9%" in rows[4]
    assert verdict["float8"] == "PASS" and "1.20x" in rows[5]
    assert verdict["syncs"] == "MISS"  # one row saw 2 syncs per step
    assert verdict["energy"] == "PASS"
    assert "normia train triton: 0" in rows[6]  # the normia loop's syncs beside the bench loop's
    assert verdict["normia_loss"] == "PASS" and "0.2% (<= 1%)" in rows[8]
    assert verdict["normia_fsdp"] == "MISS" and "needs at least 2 processes" in rows[9]
    assert verdict["normia_resume"] == "PASS"
    assert verdict["ckpt_async"] == "PASS" and "4.0% (1b" in rows[11]
    assert verdict["ckpt_total"] == "MISS"  # 1.7x the disk's time > 1.5x
    assert lines[-1] == "9 PASS, 4 MISS, 0 NOT MEASURED"


def test_targets_on_a_cpu_folder_are_not_measured_with_the_reason(tmp_path: Path) -> None:
    row = {"model": "tiny", "compile": False, "float8": True, "status": "not measured",
           "reason": "float8 training needs an NVIDIA GPU of compute capability 8.9 or newer"}  # fmt: skip
    _write(tmp_path, "train", [{**_train("tiny", None, 100.0, syncs=None), "wh_per_mtok": None}, row],
           {"energy": "not measured: no RAPL"})  # fmt: skip
    text = "\n".join(summarize.targets(tmp_path))
    assert "PASS" not in text.replace("0 PASS", "") and "MISS" not in text.replace("0 MISS", "")
    assert "compute capability 8.9" in text and "set_sync_debug_mode needs CUDA" in text


def _wheel(folder: Path, name: str, requires: list[str]) -> None:
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as z:
        meta = "Metadata-Version: 2.1\nName: x\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
        z.writestr(f"{name}-1.0.dist-info/METADATA", meta)


def test_the_scripts_cpu_check_of_normia_train_is_never_a_pass(tmp_path: Path) -> None:
    """CPU mode runs kernels=torch twice on llama_tiny and FSDP on the CPU: it checks the script, not the targets.
    Before, the screen showed PASS for "triton and torch kernels, same loss curve" and "fsdp on one GPU"."""
    rows = [
        {"run": r, "exit_code": 0, "tokens_per_s": 1e4, "peak_mem_gb": None}
        for r in ("triton", "torch", "fsdp")
    ]
    checks = {"loss_curves": {"max_gap_nats": 0.0, "max_relative_gap": 0.0, "ok": True}, "fsdp": {"ok": True},
              "ctrl_c": "SIGINT at step 10", "resume": {"ok": True, "final_step": 20}}  # fmt: skip
    doc = {"device": "cpu (tiny check)", "rows": rows, "checks": checks, "loss_tolerance_relative": 0.01}
    (tmp_path / "normia_train.json").write_text(json.dumps(doc))
    found = summarize.check_normia_train(doc)
    assert {v[0] for v in found.values()} == {"NOT MEASURED"}
    assert all("CPU check of the script only" in v[1] for v in found.values())


def test_wheel_closure_names_what_the_gpu_machine_would_miss(tmp_path: Path) -> None:
    _wheel(
        tmp_path,
        "omegaconf",
        ["antlr4-python3-runtime==4.9.*", "PyYAML>=5.1", 'dataclasses; python_version == "3.6"'],
    )
    _wheel(tmp_path, "hydra_core", ["omegaconf", "packaging", 'rich; extra == "dev"'])
    assert check_wheels.closure(tmp_path) == [
        f"omegaconf-1.0-py3-none-any.whl needs antlr4-python3-runtime: neither on the GPU machine nor in {tmp_path}/"
    ]
    _wheel(tmp_path, "antlr4_python3_runtime", [])
    assert check_wheels.closure(tmp_path) == []


def test_loss_gap_compares_the_steps_both_runs_recorded() -> None:
    a = {"loss_steps": [1, 2, 3, 4], "losses": [10.0, 9.0, 8.0, 7.0]}
    b = {"loss_steps": [1, 2, 3], "losses": [10.0, 9.01, 8.05]}
    assert abs(normia_train.max_loss_gap(a, b) - 0.05) < 1e-12
    assert abs(normia_train.max_loss_gap(a, b, relative=True) - 0.05 / 8.05) < 1e-12
    assert normia_train.max_loss_gap(a, b, from_step=3) is None
    assert normia_train.max_loss_gap(a, {}) is None


@pytest.mark.slow
def test_run_all_in_cpu_mode_ends_with_the_targets_screen(tmp_path: Path) -> None:
    """benchmarks/gpu/run_all.sh on this CPU machine (tiny sizes), two steps only to stay cheap (~30 s): each
    runs under its limit, summary.md is written, and the last screen is the targets table."""
    env = {
        **os.environ,
        "STEPS": "float8 checkpoint",
        "PYTHON": sys.executable,
        "NORMIA_SITE": str(tmp_path / "site"),
    }
    out = subprocess.run(["bash", str(ROOT / "benchmarks/gpu/run_all.sh"), str(tmp_path / "r")], env=env,
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert "== float8: exit 0" in out.stdout and "== checkpoint: exit 0" in out.stdout
    assert lines[-1].endswith("NOT MEASURED") and len([x for x in lines if x.startswith("| ")]) == 2 + len(
        summarize.TARGETS
    )
    assert "| target | figure | verdict |" in (tmp_path / "r" / "summary.md").read_text()
    rows = json.loads((tmp_path / "r" / "train_float8.json").read_text())["rows"]
    assert [(r["float8"], r["status"]) for r in rows] == [(False, "ok"), (True, "not measured")]
    ckpt = json.loads((tmp_path / "r" / "checkpoint.json").read_text())
    assert [r["mode"] for r in ckpt["rows"]] == ["gather_rank0", "sharded_sync", "sharded_async"]
    assert "CPU run: " in out.stdout  # the checkpoint targets read the CPU figures as a script check only
