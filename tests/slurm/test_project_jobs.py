"""Issue 10 on the tests' real Slurm cluster: a researcher's project (not pip-installed: its model imports only
from the project's src/) runs on the nodes in the project's folder, with its own model and configs, through each way
normia reaches Slurm: `launcher=slurm` (submitit), `launcher=srun` inside an allocation, and the slurm/*.sbatch
templates. The dry runs without a cluster are in tests/project/test_project_slurm.py."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from normia.launch import events

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

REPO = Path(__file__).resolve().parents[2]


def _project_writer():
    """tests/project/conftest.py's write_project, loaded under a name of its own (conftest modules are not
    importable by name, and a second module called `conftest` would clash with this folder's)."""
    spec = importlib.util.spec_from_file_location(
        "normia_tests_tiny_project", REPO / "tests/project/conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.write_project


write_project = _project_writer()
# The CLI finds the project from its working folder, never from the test process's environment.
CLEAN_ENV = {"NORMIA_CONFIG_PATH": "", "PYTHONPATH": ""}
SHORT = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=none"]
SRUN = ["srun", "-p", "debug", "-N", "1", "-n", "1", "--cpus-per-task=1"]
SBATCH = ["sbatch", "--wait", "--parsable", "-p", "debug", "--ntasks-per-node=1", "--cpus-per-task=1"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The tiny project (my-study 0.3.0, its own model my_study.models.MyNet on normia's digits), resolved."""
    assert importlib.util.find_spec("my_study") is None  # not installed: only its src/ folder can provide it
    return write_project(tmp_path / "my-study").resolve()


def job_start(output_dir: Path) -> dict:
    starts = [e for e in events.read(output_dir) if e["event"] == "job_start"]
    assert starts, events.read(output_dir)
    return starts[0]


def uses_the_projects_model(output_dir: Path) -> bool:
    return "_target_: my_study.models.MyNet" in (output_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_launcher_slurm_runs_the_projects_job_in_its_folder_with_its_code(project: Path, normia_cli) -> None:
    """Submitted from a subfolder of the project, and with a setup line that clears PYTHONPATH (as `module purge`
    or a module's own PYTHONPATH can on a real cluster): the ranks still start in the project's folder and import
    the project's model from its src/. Outputs and logs stay under the folder normia train ran in."""
    here = project / "notebooks"
    here.mkdir()
    result = normia_cli(
        "train",
        "experiment=my_study",
        "launcher=slurm",
        "launcher.master_addr=127.0.0.1",
        "launcher.cpus_per_task=1",
        "launcher.time=00:15:00",
        'launcher.setup=["unset PYTHONPATH NORMIA_CONFIG_PATH"]',
        "launcher.wait=true",
        *SHORT,
        cwd=here,
        env=CLEAN_ENV,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    job_id = re.search(r"submitted job (\d+)", text)[1]
    assert f"job {job_id}: COMPLETED" in text
    out = Path(re.search(r"^    output: (.+)$", text, re.M)[1])
    assert out.parent == here / "outputs" / "my_study", text
    done = json.loads((out / "done.json").read_text())
    assert isinstance(done["result"], float) and done["global_step"] > 0, done
    assert uses_the_projects_model(out)
    start = job_start(out)
    assert start["cwd"] == str(project) and start["project"] == "my-study 0.3.0", start
    assert (out / "slurm" / job_id / f"{job_id}_0_log.out").is_file()  # the logs where they always were


def test_srun_dry_run_in_an_allocation_shows_the_projects_folder(project: Path) -> None:
    """`srun normia train ... launcher=srun` from a subfolder of the project, in a real allocation."""
    here = project / "notebooks"
    here.mkdir()
    env = {**os.environ, **CLEAN_ENV, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [
            *SRUN,
            sys.executable,
            "-m",
            "normia.cli",
            "train",
            "experiment=my_study",
            "launcher=srun",
            *SHORT,
            "--dry-run",
        ],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert re.search(rf"^1 node\(s\) x 1 task\(s\): .* -> {here}/outputs/my_study/slurm-\d+$", text, re.M), (
        text
    )
    assert f"working folder: {project} (project my-study 0.3.0; each rank enters it before training)" in text
    assert f"project code: {project / 'src'} first on PYTHONPATH" in text
    assert "dry run: nothing run" in text and not (here / "outputs").exists()


@pytest.mark.slow
def test_cpu_sbatch_template_runs_a_project_named_by_normia_project(project: Path, tmp_path: Path) -> None:
    """The template submitted from normia's checkout with NORMIA_PROJECT: it cds into the project, so normia finds
    the project's experiment and model (launcher=srun) there."""
    env = {
        **os.environ,
        **CLEAN_ENV,
        "EXP": "my_study",
        "NORMIA_PROJECT": str(project),
        "NORMIA_OUTPUT_ROOT": str(tmp_path / "out"),
        "EXTRA": " ".join(SHORT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [*SBATCH, f"--output={tmp_path}/%j.out", "slurm/cpu.sbatch"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    job_id = result.stdout.strip()
    logs = list(tmp_path.glob("*.out"))
    log = logs[0].read_text() if logs else ""
    assert result.returncode == 0, result.stderr + log
    assert f"normia: working folder {project}" in log
    out = tmp_path / "out" / "my_study" / f"slurm-{job_id}"
    done = json.loads((out / "done.json").read_text())
    assert isinstance(done["result"], float), done
    assert uses_the_projects_model(out)
    start = job_start(out)
    assert start["cwd"] == str(project) and start["project"] == "my-study 0.3.0", start


def test_a_template_given_a_missing_project_fails_at_once_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-project"
    env = {
        **os.environ,
        "NORMIA_PROJECT": str(missing),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        [*SBATCH, f"--output={tmp_path}/%j.out", "slurm/cpu.sbatch"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = next(tmp_path.glob("*.out")).read_text()
    assert result.returncode != 0, log
    assert f"normia: cannot enter {missing} (NORMIA_PROJECT): no such folder on" in log, log
    assert "srun" not in log
