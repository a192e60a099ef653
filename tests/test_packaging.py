"""`pip install .` ships everything normia needs: kernels, the Hydra configs and the bundled corpus are found from
a wheel install, not only from a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_kernels_configs_and_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("normia-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "normia/kernels/rms_norm.py",
        "normia/configs/train.yaml",
        "normia/configs/experiment/quickstart.yaml",
        "normia/configs/launcher/austral.yaml",
        "normia/data/corpora/coriolanus.txt",
        "normia/data/corpora/avis_fr.csv",
        "normia/project/templates/common/README.md.tmpl",
    ):
        assert needed in names, needed
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    code = (
        "import normia, normia.kernels.rms_norm\n"
        "from normia.config.compose import compose_job\n"
        "from hydra.utils import instantiate\n"
        "cfg = compose_job(['experiment=poc_shakespeare_bytes'])\n"
        "instantiate(cfg.data)  # reads the bundled corpus from the installed package\n"
        "print(normia.__file__, cfg.name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert str(target) in out, "the wheel's copy must be the one imported"
