"""Versions outside normia's declared ranges are refused at start-up in one line (issue 21).

The environment is made real: a folder first on PYTHONPATH holding only a `torch-2.6.0.dist-info` (what
importlib.metadata reads, as on a node where `module load aidl/pytorch/2.6.0-cuda12.6` comes before normia's venv)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from normia.versions import AUSTRAL_TORCH_MODULE, unsupported_versions


def planted(tmp_path: Path, name: str, version: str) -> dict[str, str]:
    """An environment whose importlib.metadata sees `name` at `version` first."""
    site = tmp_path / "site"
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))}


def test_the_installed_set_is_supported() -> None:
    assert unsupported_versions() == []


def test_an_old_cluster_torch_is_refused_before_anything_runs(workdir: Path, normia_cli) -> None:
    proc = normia_cli("train", "experiment=quickstart", env=planted(workdir, "torch", "2.6.0"), cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: unsupported version: torch 2.6.0 (normia needs ")
    assert ">=2.10" in lines[0] and AUSTRAL_TORCH_MODULE in lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == ["site"]  # no outputs/, no mlflow.db


@pytest.mark.parametrize(
    "name, version", [("lightning", "3.0.0"), ("mlflow", "4.0.0"), ("hydra-core", "1.4.0")]
)
def test_a_next_major_release_is_refused(workdir: Path, normia_cli, name: str, version: str) -> None:
    proc = normia_cli(
        "train", "experiment=quickstart", "--dry-run", env=planted(workdir, name, version), cwd=workdir
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{name} {version} (normia needs" in proc.stderr and "pip install" in proc.stderr


def test_info_and_help_still_run_to_show_what_is_installed(workdir: Path, normia_cli) -> None:
    env = planted(workdir, "torch", "2.6.0")
    assert normia_cli("train", "--help", env=env, cwd=workdir).returncode == 0
    info = normia_cli("info", env=env, cwd=workdir)
    assert info.returncode == 0, info.stderr
