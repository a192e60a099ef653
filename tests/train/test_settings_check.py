"""Issue 25 B: settings Lightning would silently reinterpret, and torch.compile without its compiler, are refused in
one line before anything is written (they used to train bf16 while recording 16-mixed, or end in an
InvalidCxxCompiler traceback at the first step)."""

from __future__ import annotations

from pathlib import Path

import pytest

from normia.errors import UserError
from normia.training.settings_check import check_precision_on_cpu, missing_compiler
from tests.conftest import FAST, run_normia


def _refused_in_one_line(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("precision", ["16-mixed", "transformer-engine"])
def test_a_precision_the_cpu_would_replace_is_refused(precision: str) -> None:
    with pytest.raises(UserError, match=f"trainer.precision={precision} on the CPU"):
        check_precision_on_cpu(precision)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true", "64-true"])
def test_precisions_that_run_as_written_on_the_cpu_pass(precision: str) -> None:
    check_precision_on_cpu(precision)


def test_a_compiler_that_is_missing_or_does_not_run_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    assert "no-such-g++" in (missing_compiler(on_cpu=True) or "")
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    assert "broken-cc" in (missing_compiler(on_cpu=False) or "")
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang on the PATH: Triton could not build
    assert "C compiler" in (missing_compiler(on_cpu=False) or "")


def test_16_mixed_on_the_cpu_and_compile_without_a_compiler_leave_nothing(workdir: Path) -> None:
    result = run_normia("train", "experiment=quickstart", *FAST, "trainer.precision=16-mixed", cwd=workdir)
    _refused_in_one_line(result, "trainer.precision=16-mixed", "bf16-mixed")
    result = run_normia(
        "train", "experiment=quickstart", *FAST, "compile=true", cwd=workdir, env={"CXX": "/nonexistent/g++"}
    )
    _refused_in_one_line(result, "compile=true", "/nonexistent/g++", "compile=false")
    assert sorted(p.name for p in workdir.iterdir()) == []
