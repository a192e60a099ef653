"""Nothing at the repository root shadows an installed distribution (issue 21).

transformers >= 5.25 imports Hugging Face's `kernels` distribution; normia's top-level `kernels/` folder has the
same name. Every process started with the repository root first on sys.path (`python -m pytest`, `python -c`,
notebooks, DDP ranks, Slurm jobs started in a checkout) must still import the installed distribution."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def regular_packages_at(folder: Path) -> list[str]:
    """Names that `import NAME` resolves to a file of `folder` when `folder` is first on sys.path: modules (*.py)
    and regular packages (folders with __init__.py). A folder without __init__.py is only a namespace portion,
    which Python skips when any later sys.path entry holds a regular package or module of that name."""
    names = [p.stem for p in folder.glob("*.py")]
    names += [p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    return sorted(names)


def test_the_root_holds_no_regular_package_or_module() -> None:
    found = regular_packages_at(ROOT)
    assert found == [], (
        f"{found} at the repository root would shadow any installed distribution of that name for processes "
        "started there; keep top-level folders without __init__.py (see kernels/README.md)"
    )


def test_the_check_sees_a_regular_package(tmp_path: Path) -> None:
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    (tmp_path / "benchmarks").mkdir()  # a namespace portion: not reported
    (tmp_path / "setup.py").write_text("")
    assert regular_packages_at(tmp_path) == ["kernels", "setup"]


def test_no_root_folder_is_the_import_name_of_an_installed_distribution_with_init() -> None:
    """Every top-level import name of every installed distribution, against the root's entries that Python could
    import as a regular package: none may match (the namespace folders may, they lose to the installed one)."""
    installed = importlib.metadata.packages_distributions()
    clashes = [name for name in regular_packages_at(ROOT) if name in installed]
    assert clashes == []


def _run_from_root(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    full_env.update(env or {})
    # `python -c` puts the current folder (the repository root) first on sys.path, as `python -m pytest` does.
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300
    )


def test_import_kernels_from_the_root_reaches_hugging_faces_distribution() -> None:
    pytest.importorskip("transformers")
    try:
        importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("Hugging Face's kernels distribution is not installed (the hf extra brings it)")
    proc = _run_from_root(
        "import sys, kernels, normia.kernels.rms_norm as r\n"
        "assert sys.path[0] == '', sys.path[:2]\n"
        "print(kernels.__file__)\n"
        "print(r.__file__)\n"
    )
    assert proc.returncode == 0, proc.stderr
    hf_file, normia_file = proc.stdout.split()
    assert "site-packages" in hf_file and not Path(hf_file).is_relative_to(ROOT / "kernels"), hf_file
    assert normia_file.endswith("rms_norm.py")


@pytest.mark.slow
def test_transformers_loads_a_model_from_the_root() -> None:
    """The failure seen on 2026-12-07: transformers' hub-kernel integration imported normia's folder and every model
    load from the repository root raised "cannot import name 'CUDAProperties' from 'kernels'"."""
    pytest.importorskip("transformers")
    proc = _run_from_root(
        "import transformers, torch\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,\n"
        "                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)\n"
        "m = LlamaForCausalLM(cfg)\n"
        "out = m(torch.zeros(1, 4, dtype=torch.long))\n"
        "print(tuple(out.logits.shape))\n"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "(1, 4, 64)"
