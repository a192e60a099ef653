"""`normia init`: every template writes a project whose own tests pass as generated; bad input is refused with one
line and exit 2, and nothing is written then."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from normia.errors import UserError
from normia.project.scaffold import TEMPLATES, write_project

TEMPLATE_NAMES = sorted(TEMPLATES)
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def snapshot(folder: Path) -> list[str]:
    """Every path under folder, to show that a refused command wrote nothing."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(done: subprocess.CompletedProcess) -> str:
    """The one-line error of a refused command (exit 2)."""
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_each_template_writes_a_complete_clean_project(template: str, tmp_path: Path, normia_cli) -> None:
    done = normia_cli("init", "my-study", "--template", template, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "my-study"
    for rel in (
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "configs/experiment/my_study.yaml",
        "configs/model/my_study_net.yaml",
        "configs/data/my_study_data.yaml",
        "src/my_study/__init__.py",
        "src/my_study/model.py",
        "src/my_study/data.py",
        "tests/test_experiment.py",
    ):
        assert (root / rel).is_file(), rel
    assert any((root / "data").rglob("*.*")), "the sample data is missing"
    texts = {p: p.read_text() for p in root.rglob("*") if p.suffix in (".py", ".yaml", ".toml", ".md")}
    assert not [p for p, text in texts.items() if "{{" in text or "}}" in text], "a placeholder was left"
    assert not list(root.rglob("*.tmpl")) and not list(root.rglob("_about*"))
    experiment = texts[root / "configs/experiment/my_study.yaml"]
    assert experiment.startswith("# @package _global_") and "name: my_study" in experiment
    assert "override /model: my_study_net" in experiment and "override /data: my_study_data" in experiment
    assert "CHANGE" in experiment and "normia>=" in texts[root / "pyproject.toml"]
    assert "launcher=austral" in texts[root / "README.md"] and "pip install -e ." in texts[root / "README.md"]
    assert "my_study" in done.stdout and "normia train experiment=my_study" in done.stdout
    if RUFF:  # the generated code is as clean as normia's: lint and format under the project's own settings
        for command in (["check", "-q", "--no-cache"], ["format", "--check", "-q", "--no-cache"]):
            lint = subprocess.run([RUFF, *command, "."], cwd=root, capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_key_to_change_is_marked_in_the_experiment(template: str, tmp_path: Path, normia_cli) -> None:
    """Each key a user must set for their own data (a ??? in the model or data option) is in the experiment, on a
    line marked CHANGE; the forecaster's sizes come from the data (one source of truth)."""
    done = normia_cli("init", "study", "--template", template, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    configs = tmp_path / "study/configs"
    experiment = (configs / "experiment/study.yaml").read_text().splitlines()
    for option in ("model/study_net.yaml", "data/study_data.yaml"):
        must_set = [
            line.split(":")[0] for line in (configs / option).read_text().splitlines() if ": ???" in line
        ]
        for key in must_set:
            lines = [line for line in experiment if line.strip().startswith(f"{key}:")]
            assert lines and "# CHANGE" in lines[0], f"{option}: {key} is not marked CHANGE in the experiment"
    if template == "forecast":
        model = (configs / "model/study_net.yaml").read_text()
        assert "input_len: ${data.input_len}" in model and "horizon: ${data.horizon}" in model


def test_default_name_comes_from_the_folder(tmp_path: Path, normia_cli) -> None:
    done = normia_cli("init", "Flood-Risk 2024", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "Flood-Risk 2024"
    assert (root / "src/flood_risk_2024/model.py").is_file()
    assert 'name = "flood-risk-2024"' in (root / "pyproject.toml").read_text()


def test_init_dot_fills_the_empty_current_folder_and_keeps_it(tmp_path: Path, normia_cli) -> None:
    """`normia init .`: the user's shell is in that folder, so the folder itself must stay (same inode)."""
    here = tmp_path / "soil_moisture"
    here.mkdir()
    inode = here.stat().st_ino
    done = normia_cli("init", ".", "--template", "forecast", cwd=here)
    assert done.returncode == 0, done.stderr
    assert here.stat().st_ino == inode
    assert (here / "src/soil_moisture/data.py").is_file() and (here / "data/temperature.csv").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["soil_moisture"], "a staging folder was left beside it"


def test_a_non_empty_folder_is_refused(tmp_path: Path, normia_cli) -> None:
    target = tmp_path / "study"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    line = refused(normia_cli("init", str(target), cwd=tmp_path))
    assert "is not empty (notes.txt)" in line and "new or empty folder" in line
    assert snapshot(tmp_path) == before


def test_a_file_as_path_is_refused(tmp_path: Path, normia_cli) -> None:
    (tmp_path / "study").write_text("")
    line = refused(normia_cli("init", "study", cwd=tmp_path))
    assert "is a file" in line
    assert snapshot(tmp_path) == ["study"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("my-study", "not a Python identifier"),
        ("9lives", "not a Python identifier"),
        ("café", "not a Python identifier"),
        ("class", "Python keyword"),
        ("normia", "normia's own package"),
        ("tests", "tests/ folder"),
        ("json", "would hide the existing module 'json'"),
        ("torch", "would hide the existing module 'torch'"),
    ],
)
def test_a_bad_package_name_is_refused(name: str, why: str, tmp_path: Path, normia_cli) -> None:
    line = refused(normia_cli("init", "study", "--name", name, cwd=tmp_path))
    assert f"--name '{name}'" in line and why in line and "--name my_study" in line
    assert snapshot(tmp_path) == []


def test_a_folder_name_that_makes_no_package_name_asks_for_one(tmp_path: Path, normia_cli) -> None:
    line = refused(normia_cli("init", "2024", cwd=tmp_path))
    assert "made from the folder name '2024'" in line and "--name" in line
    assert snapshot(tmp_path) == []


def test_an_unknown_template_is_refused_with_the_closest_name(tmp_path: Path, normia_cli) -> None:
    line = refused(normia_cli("init", "study", "--template", "forcast", cwd=tmp_path))
    assert line == "error: unknown --template 'forcast' (did you mean 'forecast'?)"
    line = refused(normia_cli("init", "study", "--template", "audio", cwd=tmp_path))
    assert "valid: forecast, images, lm, table" in line
    assert snapshot(tmp_path) == []


def test_help_lists_the_templates(tmp_path: Path, normia_cli) -> None:
    done = normia_cli("init", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for name in TEMPLATE_NAMES:
        assert f"  {name} " in done.stdout


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    """A failure midway (here the sample data writer; in life a full disk) removes the staging folder and every
    folder the call created."""

    def disk_full(folder: Path) -> None:
        raise OSError(28, "No space left on device")

    target = tmp_path / "new" / "deeper" / "study"
    with pytest.raises(UserError, match="No space left on device"):
        write_project(target, {"README.md": "# study\n", "src/study/__init__.py": ""}, disk_full)
    assert snapshot(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_the_generated_tests_pass(template: str, tmp_path: Path, normia_cli) -> None:
    """The project's own tests, as a researcher runs them: pytest in the project folder (compose the experiment,
    then `normia train experiment=... debug=fast_dev_run`); they leave no run, store or output behind."""
    root = tmp_path / "study"
    assert normia_cli("init", str(root), "--template", template, cwd=tmp_path).returncode == 0
    before = snapshot(root)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NORMIA_CONFIG_PATH")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
    assert snapshot(root) == before


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_new_project_is_a_repository_with_a_clean_first_commit(tmp_path: Path, normia_cli) -> None:
    """Issue 25 D: without a repository every run of the project recorded no commit."""
    env = {"GIT_CONFIG_GLOBAL": str(tmp_path / "no-gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"}  # no identity set
    done = normia_cli("init", "study", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "study"
    git = ["git", "-C", str(root)]
    assert subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).returncode == 0
    assert subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    tracked = subprocess.run([*git, "ls-files"], capture_output=True, text=True).stdout.split()
    assert "pyproject.toml" in tracked and "src/study/model.py" in tracked
    assert "git: a new repository with a first commit" in done.stdout

    from normia.tracking.run_tags import git_state

    commit, dirty = git_state(root)
    assert commit and dirty is False

    # inside an existing repository, the project is part of it: no nested repository
    done = normia_cli("init", "study/sub", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert not (root / "sub" / ".git").exists() and f"inside the repository {root}" in done.stdout
