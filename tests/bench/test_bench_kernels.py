"""`normia bench kernels` on CPU at tiny sizes: result files, figures, skips with reasons, bad names, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from schema import assert_positive, assert_timing, load_run

from normia.bench.cli import main
from normia.bench.kernel_specs import KERNELS
from normia.bench.providers import PROVIDERS
from normia.errors import UserError

TINY = ["64x96", "apply_rope:1x2x8x16", "fused_linear_cross_entropy:8x16x40"]


@pytest.fixture(scope="module")
def kernels_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("kernels")
    args = ["kernels", "--providers", "reference", "eager", "triton", "--shapes", *TINY]
    assert main([*args, "--min-time", "0.01", "--threads", "1", "--no-plots", "--out", str(out)]) == 0
    return out, load_run(out, "kernels")


def test_every_kernel_measured_with_finite_positive_figures(kernels_run: tuple[Path, dict]) -> None:
    _out, doc = kernels_run
    assert doc["status"] == "complete"
    assert_positive(doc["limits"], ("copy_gbps", "matmul_tflops"))
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    assert {r["kernel"] for r in ok} == set(KERNELS)
    for row in ok:
        assert_timing(row, "median_ms", "p20_ms", "p80_ms")
        rate = "gbps" if row["limit"] == "copy" else "tflops"
        assert_positive(row, (rate, "pct_of_limit"))
        if row["pass"] != "bwd":
            assert_positive(row, ("peak_mem_mb",))
        assert 0 <= row["rel_err"] < 1e-4, row  # fp32 against the float64 eager output
    for kernel in KERNELS:  # eager runs every pass of every kernel
        passes = {r["pass"] for r in ok if r["kernel"] == kernel and r["provider"] == "eager"}
        assert passes == {"fwd", "bwd", "fwd+bwd"}, kernel


def test_triton_on_cpu_is_skipped_with_its_reason(kernels_run: tuple[Path, dict]) -> None:
    _out, doc = kernels_run
    triton_rows = [r for r in doc["rows"] if r["provider"] == "triton"]
    assert triton_rows and all(r["status"] == "skipped" and "CUDA" in r["reason"] for r in triton_rows)


def test_plot_written_per_kernel(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    args = [
        "kernels",
        "--kernels",
        "swiglu",
        "--providers",
        "eager",
        "reference",
        "--shapes",
        "16x32",
        "32x64",
    ]
    assert main([*args, "--min-time", "0.01", "--threads", "1", "--out", str(tmp_path)]) == 0
    doc = load_run(tmp_path, "kernels")
    assert doc["plots"] == ["kernels_swiglu.png"]
    assert (tmp_path / "kernels_swiglu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shape_that_does_not_fit_is_skipped_not_a_crash(tmp_path: Path) -> None:
    args = [
        "kernels",
        "--kernels",
        "rms_norm",
        "--providers",
        "eager",
        "--shapes",
        "4000000x4000000",
        "64x32",
    ]
    assert main([*args, "--min-time", "0.01", "--no-plots", "--out", str(tmp_path)]) == 0
    rows = load_run(tmp_path, "kernels")["rows"]
    big = [r for r in rows if r["shape"] == "4000000x4000000"]
    assert len(big) == 1 and big[0]["status"] == "skipped" and "does not fit" in big[0]["reason"]
    assert any(r["shape"] == "64x32" and r["status"] == "ok" for r in rows)


@pytest.mark.parametrize(
    ("flag", "bad", "valid"),
    [
        ("--kernels", "rms_nrom", KERNELS),
        ("--providers", "tritonn", PROVIDERS),
        ("--passes", "forward", ("fwd",)),
    ],
)
def test_unknown_names_list_the_valid_ones(flag: str, bad: str, valid: tuple, tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        main(["kernels", flag, bad, "--out", str(tmp_path)])
    message = str(err.value)
    assert bad in message and all(name in message for name in valid)


def test_bad_shape_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="positive sizes"):
        main(["kernels", "--shapes", "64xabc", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="dims"):
        main(["kernels", "--kernels", "rms_norm", "--shapes", "4x4x4", "--out", str(tmp_path)])


def test_interrupted_run_keeps_the_rows_already_measured(tmp_path: Path) -> None:
    """SIGTERM (a job's time limit) in the middle of a run: the rows measured so far stay, marked interrupted."""
    shapes = [f"{32 * i}x64" for i in range(1, 40)]
    cmd = [sys.executable, "-m", "normia.cli", "bench", "kernels", "--kernels", "swiglu", "--providers", "eager",
           "--shapes", *shapes, "--min-time", "0.05", "--threads", "1", "--no-plots", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    json_path = tmp_path / "kernels.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if json_path.exists() and len(json.loads(json_path.read_text())["rows"]) >= 3:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    doc = load_run(tmp_path, "kernels")
    assert doc["status"] == "interrupted"
    assert 3 <= len(doc["rows"]) < 3 * len(shapes)
    assert all(r["status"] == "ok" for r in doc["rows"])


@pytest.mark.parametrize("what", ["kernels", "train", "scaling"])
def test_help_of_each_command(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([what, "--help"])
    assert exit_.value.code == 0 and "--out" in capsys.readouterr().out


def test_bad_name_through_the_normia_cli_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from normia.cli import main as normia_main

    assert normia_main(["bench", "kernels", "--providers", "tritn"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown provider 'tritn' (did you mean 'triton'?)") and err.count("\n") == 1


def test_summary_for_the_readme(kernels_run: tuple[Path, dict]) -> None:
    out, _doc = kernels_run
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "summarize.py"
    result = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("### cpu: ") and "| rms_norm | 64x96 | eager |" in result.stdout
