"""Issue 10, Slurm side, without a cluster: a project's job is planned to run in the project's folder with the
project's code and configs, and `--dry-run` shows that folder and the command each rank runs. Outside a project the
job runs where sbatch runs, as before. The real jobs (launcher=slurm, launcher=srun, the sbatch templates) are in
tests/slurm/test_project_jobs.py."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import re
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from normia.errors import UserError

DRY = ["launcher.query_cluster=false", "trainer.enable_progress_bar=false", "--dry-run"]
# launcher.python=python: the module's Python (the preset's setup loads one); this venv's torch is not checked
AUSTRAL = ["experiment=my_study", "launcher=austral", "trainer=gpu", "launcher.python=python"]
NO_PROJECT_ENV = {"NORMIA_CONFIG_PATH": ""}  # the project comes from the folder the CLI runs in


def script_lines(text: str) -> list[str]:
    """The sbatch script the dry run prints, one line each."""
    return text[text.index("#!/bin/bash") :].splitlines()


def test_the_tiny_project_is_not_installed() -> None:
    """What the tests below rely on: my_study imports only through the project's src/ folder."""
    assert importlib.util.find_spec("my_study") is None


def test_austral_dry_run_from_the_project_shows_its_folder_and_the_command(
    tiny_project: Path, normia_cli
) -> None:
    root = tiny_project.resolve()
    result = normia_cli("train", *AUSTRAL, *DRY, cwd=root, env=NO_PROJECT_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert f"working folder: {root} (project my-study 0.3.0; #SBATCH --chdir)" in text, text
    assert (
        f"project code: {root / 'src'} first on PYTHONPATH (my_study imported from there, installed or not)"
        in text
    )
    assert f"project configs: NORMIA_CONFIG_PATH={root / 'configs'}" in text
    command = re.search(r"^command \(each rank, in the working folder\): (srun .*)$", text, re.M)
    assert command, text
    assert re.search(
        r" python -u -m submitit\.core\._submit \S+/outputs/my_study/[^/]+/slurm/%j$", command[1]
    )
    assert "it runs the job composed and checked here (normia train with the overrides above)" in text
    script = script_lines(text)
    assert f"#SBATCH --chdir={root}" in script
    exports = [
        f'export PYTHONPATH={root / "src"}"${{PYTHONPATH:+:$PYTHONPATH}}"',
        f"export NORMIA_CONFIG_PATH={root / 'configs'}",
    ]
    for line in exports:
        assert line in script, "\n".join(script)
    # after the preset's setup (a `module purge`/`module load` may reset PYTHONPATH), before the ranks start
    order = [
        script.index(line)
        for line in ("module load aidl/pytorch/2.10.0-py3.12-cuda12.6", *exports, command[1])
    ]
    assert order == sorted(order), "\n".join(script)
    # the job's own model and configs: the project's experiment composed with the project's model
    assert "-> " + str(root / "outputs" / "my_study") in text
    assert "dry run: nothing submitted (1 job(s) would be)" in text
    assert not (root / "outputs").exists() and not (root / "mlflow.db").exists()


def test_from_a_subfolder_the_job_still_starts_in_the_project_and_writes_where_it_always_did(
    tiny_project: Path, normia_cli
) -> None:
    """Outputs, logs and the MLflow store stay under the folder normia train runs in; only the ranks' working folder
    (where the project's relative paths point) is the project's."""
    root = tiny_project.resolve()
    here = root / "notebooks"
    here.mkdir()
    result = normia_cli("train", *AUSTRAL, *DRY, cwd=here, env=NO_PROJECT_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert f"working folder: {root} (project my-study 0.3.0; #SBATCH --chdir)" in text
    assert f"#SBATCH --chdir={root}" in text
    out = re.search(r"-> (\S+)$", text, re.M)[1]
    assert Path(out).parent == here / "outputs" / "my_study", text
    assert f"#SBATCH --output={out}/slurm/%j/%j_0_log.out" in text
    assert f"mlflow: sqlite:///{here / 'mlflow.db'}" in text
    assert not any(here.iterdir())


def test_outside_a_project_the_job_runs_where_sbatch_runs_as_before(workdir: Path, normia_cli) -> None:
    result = normia_cli(
        "train", "experiment=quickstart", "launcher=slurm", *DRY, cwd=workdir, env=NO_PROJECT_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert f"working folder: {workdir.resolve()} (sbatch's default: the folder normia train runs in)" in text
    assert re.search(
        r"^command \(each rank, in the working folder\): srun .*submitit\.core\._submit", text, re.M
    )
    script = "\n".join(script_lines(text))
    assert "--chdir" not in script and "PYTHONPATH" not in script and "NORMIA_CONFIG_PATH" not in script


def test_a_chdir_that_is_not_a_folder_is_refused_before_anything_is_written(
    tiny_project: Path, normia_cli
) -> None:
    root = tiny_project.resolve()
    result = normia_cli(
        "train", *AUSTRAL, "launcher.sbatch_args.chdir=elsewhere", *DRY, cwd=root, env=NO_PROJECT_ENV
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: launcher.sbatch_args.chdir=elsewhere: no such folder"
    ), lines
    assert "#!/bin/bash" not in result.stdout and not (root / "outputs").exists()


def test_a_chdir_given_in_a_project_is_where_the_job_starts(tiny_project: Path, normia_cli) -> None:
    root = tiny_project.resolve()
    (root / "runs").mkdir()
    result = normia_cli(
        "train", *AUSTRAL, "launcher.sbatch_args.chdir=runs", *DRY, cwd=root, env=NO_PROJECT_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"working folder: {root / 'runs'} (project my-study 0.3.0; #SBATCH --chdir)" in result.stdout
    script = script_lines(result.stdout)
    assert [line for line in script if "--chdir" in line] == [f"#SBATCH --chdir={root / 'runs'}"]


def test_a_project_folder_whose_name_breaks_the_job_script_is_refused(
    tmp_path: Path, project_writer, normia_cli
) -> None:
    root = project_writer(tmp_path / "my\nstudy")
    result = normia_cli("train", *AUSTRAL, *DRY, cwd=root, env=NO_PROJECT_ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "line break" in lines[0], lines
    assert "#!/bin/bash" not in result.stdout


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """sys.path, sys.modules' my_study, PYTHONPATH and NORMIA_CONFIG_PATH restored after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/opt/site-packages-of-a-module")
    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    yield monkeypatch
    for name in [m for m in sys.modules if m == "my_study" or m.startswith("my_study.")]:
        del sys.modules[name]


def test_a_rank_enters_the_project_whatever_folder_and_environment_it_starts_in(
    tiny_project: Path, tmp_path: Path, isolated: pytest.MonkeyPatch
) -> None:
    from normia.launch.job import TrainJob
    from normia.launch.place import job_place

    root = tiny_project.resolve()
    isolated.chdir(root)
    place = job_place()
    assert place is not None and place.workdir == root and place.label == "my-study 0.3.0"
    # what the node gets: the pickled job, started in another folder with a PYTHONPATH of its own
    cfg = OmegaConf.create({"name": "my_study", "paths": {"output_dir": str(tmp_path / "out")}})
    job = pickle.loads(pickle.dumps(TrainJob(cfg, place)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    isolated.chdir(elsewhere)
    job.place.enter()
    assert Path.cwd() == root
    assert sys.path[0] == str(root / "src")
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(root / "src"), "/opt/site-packages-of-a-module"]
    assert os.environ["NORMIA_CONFIG_PATH"] == str(root / "configs")
    assert importlib.import_module("my_study.models").MyNet.__module__ == "my_study.models"
    job.place.enter()  # a requeued job enters again: nothing doubled
    assert os.environ["PYTHONPATH"].count(str(root / "src")) == 1 and sys.path.count(str(root / "src")) == 1


def test_a_rank_whose_node_lacks_the_project_folder_fails_naming_it(tmp_path: Path) -> None:
    from normia.launch.place import JobPlace

    gone = tmp_path / "not-on-this-node"
    with pytest.raises(
        UserError, match=r"the job's working folder .*not-on-this-node does not exist on \S+: put the"
    ):
        JobPlace(workdir=gone, label="my-study 0.3.0").enter()


def test_outside_a_project_a_job_has_no_place(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from normia.launch.place import job_place

    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    assert job_place() is None
