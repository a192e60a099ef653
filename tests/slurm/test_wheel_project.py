"""Issue 10 as a researcher meets it: normia installed from a built wheel (not this checkout), a project started
with `normia init` in a folder outside the repository, then its generated tests, a run, a 2-job sweep, eval,
reproduce, a dry run on launcher=austral and one real job on the tests' Slurm cluster, each with the project's own
model and configs. Lives beside the Slurm tests for their cluster fixture."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
QUIET = ["trainer.enable_progress_bar=false", "logger.system_metrics=false"]


class WheelInstall:
    """A virtual environment holding normia from a wheel; its dependencies come from this test's environment
    through a .pth file (no download, and the checkout's editable install is not on its path)."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "venv" / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        drop = (
            "MLFLOW_TRACKING_URI",
            "NORMIA_OUTPUT_ROOT",
            "NORMIA_CONFIG_PATH",
            "PYTHONPATH",
            "VIRTUAL_ENV",
        )
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(PATH=f"{self.bin}{os.pathsep}{env['PATH']}", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        env.update(extra)
        return env

    def run(self, *argv: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )

    def normia(self, *argv: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return self.run(str(self.bin / "normia"), *argv, cwd=cwd, timeout=timeout, **env)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelInstall]:
    root = tmp_path_factory.mktemp("wheel-install")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(root)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [built] = root.glob("normia-*.whl")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120
    )
    install = WheelInstall(root)
    python = str(install.bin / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", str(built)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    where = install.run(python, "-c", "import normia; print(normia.__file__)", cwd=root)
    assert where.returncode == 0 and where.stdout.startswith(site), (where.stdout, where.stderr)
    yield install


@pytest.fixture(scope="module")
def study(wheel: WheelInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`normia init` of a table-classification project, in a folder outside the repository."""
    parent = tmp_path_factory.mktemp("researcher")
    proc = wheel.normia("init", "soil-study", "--template", "table", cwd=parent)
    assert proc.returncode == 0, proc.stderr
    root = parent / "soil-study"
    assert (root / "pyproject.toml").is_file() and not str(root).startswith(str(REPO))
    return root


def experiment_of(root: Path) -> str:
    [experiment] = sorted((root / "configs" / "experiment").glob("*.yaml"))
    return experiment.stem


def test_generated_tests_pass(wheel: WheelInstall, study: Path) -> None:
    proc = wheel.run(str(wheel.bin / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=study)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_run_sweep_eval_reproduce_and_dry_run(wheel: WheelInstall, study: Path) -> None:
    experiment = f"experiment={experiment_of(study)}"
    run = wheel.normia("train", experiment, "trainer.max_epochs=1", *QUIET, cwd=study)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "== normia run" in run.stdout
    [ckpt, *_] = sorted((study / "outputs").rglob("*.ckpt"))

    sweep = wheel.normia(
        "train", "-m", experiment, "trainer.max_epochs=1", "optim.lr=1e-3,3e-3", *QUIET, cwd=study
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "== sweep of 2 job(s)" in sweep.stdout

    evaluated = wheel.normia("eval", f"ckpt={ckpt}", cwd=study)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "val/loss" in evaluated.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    first = min(runs, key=lambda r: r.info.start_time)
    assert first.data.tags.get("project.name") == study.name
    reproduced = wheel.normia("reproduce", first.info.run_id, cwd=study)
    assert reproduced.returncode == 0, reproduced.stdout[-2000:] + reproduced.stderr[-3000:]

    dry = wheel.normia(
        "train",
        experiment,
        "launcher=austral",
        "trainer=gpu",
        "launcher.python=python",
        "launcher.query_cluster=false",
        "--dry-run",
        cwd=study,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert str(study) in dry.stdout  # the job's working folder is the project


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_one_real_slurm_job_with_the_projects_model(wheel: WheelInstall, study: Path) -> None:
    out = study / "outputs" / "on-slurm"
    proc = wheel.normia(
        "train", f"experiment={experiment_of(study)}", "launcher=slurm", "launcher.master_addr=127.0.0.1",
        "launcher.cpus_per_task=1", "launcher.time=00:10:00", "launcher.wait=true", "logger=none",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"paths.output_dir={out}", cwd=study,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"job \d+: COMPLETED", proc.stdout + proc.stderr)
    done = json.loads((out / "done.json").read_text())
    assert done["global_step"] > 0
