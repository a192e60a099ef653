"""The CLI's help and info: fast, and free of heavy imports (lightning, mlflow)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("lightning", "mlflow", "hydra")


def _imported_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(out.strip().splitlines()[-1].split())


def test_help_lists_commands_without_heavy_imports() -> None:
    modules = _imported_modules(
        "import normia.cli\ntry:\n    normia.cli.main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert not [m for m in modules if m.split(".")[0] in (*HEAVY, "torch")]


def test_info_imports_no_lightning_or_mlflow() -> None:
    modules = _imported_modules("import normia.cli\nnormia.cli.main(['info'])")
    assert not [m for m in modules if m.split(".")[0] in ("lightning", "mlflow", "pytorch_lightning")]


def test_help_and_info_output(normia_cli, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = normia_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "train" in result.stdout and "bench" in result.stdout
    assert time.perf_counter() - started < 30
    info = normia_cli("info", cwd=tmp_path)
    assert info.returncode == 0
    for word in ("torch", "lightning", "mlflow", "triton", "gpu", "slurm"):
        assert word in info.stdout


def test_train_help(normia_cli, tmp_path: Path) -> None:
    result = normia_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "experiment=quickstart" in result.stdout


def test_unknown_command_exit_2(normia_cli, tmp_path: Path) -> None:
    result = normia_cli("trian", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr
