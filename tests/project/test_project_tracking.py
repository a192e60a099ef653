"""Issue 10: a run records the researcher's project (name, version, folders, git commit, dirty flag, the uncommitted
changes: their `git diff --stat`, or the patch with NORMIA_RECORD_DIFF=1 (issue 26 E)), and `normia reproduce` re-runs it only inside that project, warning when the project's
commit differs or a tree is dirty, as it does for normia's own commit.

Real git repositories made in tmp_path, a real MLflow sqlite store, the real CLI for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from normia.errors import UserError
from normia.project import find_project
from normia.tracking.project_state import DIFF_ARTIFACT, DIFF_STAT_ARTIFACT, capture, project_record

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def make_repo(root: Path) -> str:
    """git init + a local identity + one commit of everything; returns the commit."""
    git(root, "init", "-q")
    git(root, "config", "user.email", "researcher@example.org")
    git(root, "config", "user.name", "A Researcher")
    git(root, "config", "commit.gpgsign", "false")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return git(root, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo_project(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny project as a git repository with one commit (outputs/ and mlflow.db ignored, as normia init does)."""
    (tiny_project / ".gitignore").write_text("outputs/\nmultirun/\nmlflow.db\n")
    make_repo(tiny_project)
    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    return tiny_project


def test_a_clean_project_records_its_name_version_folders_and_commit(repo_project: Path) -> None:
    state = capture(find_project(repo_project))
    commit = git(repo_project, "rev-parse", "HEAD").strip()
    assert state.tags() == {
        "project.name": "my-study",
        "project.version": "0.3.0",
        "project.root": str(repo_project.resolve()),
        "project.config_dirs": str((repo_project / "configs").resolve()),
        "project.git_commit": commit,
        "project.git_dirty": "false",
    }
    assert state.artifacts() == {}  # nothing to record when clean


def test_a_dirty_project_records_a_patch_that_applies_on_the_recorded_commit(
    repo_project: Path, tmp_path: Path
) -> None:
    models = repo_project / "src/my_study/models.py"
    models.write_text(models.read_text().replace("width: int = 32", "width: int = 48"))
    (repo_project / "configs/model/my_net.yaml").write_text(
        "_target_: my_study.models.MyNet\nin_features: 64\nwidth: 48\nnum_classes: 10\n"
    )
    state = capture(find_project(repo_project))
    assert state.tags()["project.git_dirty"] == "true" and not state.diff_truncated
    (patch,) = state.artifacts().values()
    assert list(state.artifacts()) == [DIFF_ARTIFACT]
    assert "width: int = 48" in patch and "width: 48" in patch
    # The recorded commit plus the patch is the code that ran: check it on a fresh clone.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo_project), str(clone))
    git(clone, "checkout", "-q", state.commit)
    (clone / "run.patch").write_text(patch)
    git(clone, "apply", "run.patch")
    assert (clone / "src/my_study/models.py").read_text() == models.read_text()


def test_untracked_code_makes_the_tree_dirty_by_name_only_and_other_untracked_files_do_not(
    repo_project: Path,
) -> None:
    for rel in ("outputs/run/config.yaml", "notes.txt", "src/my_study/__pycache__/models.cpython-311.pyc"):
        (repo_project / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo_project / rel).write_text("not code\n")
    assert capture(find_project(repo_project)).tags()["project.git_dirty"] == "false"

    (repo_project / "src/my_study/extra.py").write_text("API_KEY = 'sk-live-0123456789abcdef'\n")
    state = capture(find_project(repo_project))
    assert state.dirty and state.untracked == ("src/my_study/extra.py",) and state.diff is None
    (patch,) = state.artifacts().values()
    assert "#   src/my_study/extra.py" in patch
    assert (
        "sk-live" not in patch and "API_KEY" not in patch
    )  # the content of untracked files is never recorded


def test_secrets_in_the_patch_are_masked(repo_project: Path) -> None:
    experiment = repo_project / "configs/experiment/my_study.yaml"
    experiment.write_text(experiment.read_text() + "tags:\n  hub_token: hf_abcdefghijklmnop\n")
    (patch,) = capture(find_project(repo_project)).artifacts().values()
    assert "hf_abcdefghijklmnop" not in patch and "hub_token: ***" in patch


PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5" * 4


def _secrets_written_as_code(root: Path) -> None:
    """A private key and a token pasted into the project's code: names that masking by name cannot see."""
    models = root / "src/my_study/models.py"
    models.write_text(
        models.read_text()
        + f'\nDEPLOY = """\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"""\n'
        + f'CLIENT = Github("{GITHUB_TOKEN}")\n'
    )


def test_a_run_records_the_diff_stat_by_default_and_the_patch_only_on_request(
    repo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26 E: the patch kept private keys and tokens written as code. By default a run records which files
    changed (git diff --stat), never their lines; NORMIA_RECORD_DIFF=1 records the patch, masked."""
    _secrets_written_as_code(repo_project)
    monkeypatch.delenv("NORMIA_RECORD_DIFF", raising=False)
    tags, texts = project_record(find_project(repo_project))
    assert tags["project.git_dirty"] == "true" and list(texts) == [DIFF_STAT_ARTIFACT]
    (stat,) = texts.values()
    assert "src/my_study/models.py" in stat and "insertion" in stat and "NORMIA_RECORD_DIFF=1" in stat
    assert PEM_BODY not in stat and GITHUB_TOKEN not in stat and "DEPLOY" not in stat

    monkeypatch.setenv("NORMIA_RECORD_DIFF", "1")
    _, texts = project_record(find_project(repo_project))
    (patch,) = texts.values()
    assert list(texts) == [DIFF_ARTIFACT] and "+CLIENT = Github(" in patch
    assert PEM_BODY not in patch and GITHUB_TOKEN not in patch and "BEGIN RSA PRIVATE KEY" in patch


def test_a_huge_patch_is_cut_with_a_note(repo_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import normia.tracking.project_state as project_state

    monkeypatch.setattr(project_state, "MAX_DIFF_BYTES", 2000)
    (repo_project / "src/my_study/models.py").write_text("x = 1\n" * 5000)
    state = capture(find_project(repo_project))
    (patch,) = state.artifacts().values()
    assert state.diff_truncated and "# TRUNCATED: only the first 2000 bytes" in patch
    assert len(patch) < 3000


def test_a_project_inside_a_larger_repository_records_only_its_own_changes(
    tmp_path: Path, project_writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    mono = tmp_path / "mono"
    project = project_writer(mono / "studies/my-study")
    (mono / "README.md").write_text("the lab's repository\n")
    commit = make_repo(mono)
    (mono / "README.md").write_text("edited elsewhere in the repository\n")
    state = capture(find_project(project))
    assert state.commit == commit and state.dirty is False

    (project / "configs/model/my_net.yaml").write_text("_target_: my_study.models.MyNet\nwidth: 8\n")
    state = capture(find_project(project))
    assert state.dirty and "studies/my-study/configs/model/my_net.yaml" in state.diff
    assert "README.md" not in state.diff


def test_a_project_outside_git_records_unknown_and_no_project_records_nothing(
    tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NORMIA_CONFIG_PATH", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # tmp_path may sit inside some repository
    tags, texts = project_record(find_project(tiny_project))
    assert tags["project.git_commit"] == "unknown" and tags["project.git_dirty"] == "unknown"
    assert tags["project.name"] == "my-study" and texts == {}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert project_record() == ({}, {})


def test_the_mlflow_run_carries_the_project_tags_and_patch(
    repo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracker itself (no training): what every normia run of a project goes through on rank zero."""
    from mlflow.tracking import MlflowClient

    from normia.tracking.mlflow_logger import MlflowTracker

    (repo_project / "configs/model/my_net.yaml").write_text("_target_: my_study.models.MyNet\nwidth: 16\n")
    monkeypatch.chdir(repo_project)
    monkeypatch.setenv("NORMIA_RECORD_DIFF", "1")
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    tracker = MlflowTracker(uri, "project-tags", tags={"normia.git_commit": "x"}, system_metrics=False)
    tracker.begin()
    tracker.finalize("success")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.version)
    assert run.data.tags["project.name"] == "my-study" and run.data.tags["project.version"] == "0.3.0"
    assert run.data.tags["project.git_dirty"] == "true" and run.data.tags["normia.git_commit"] == "x"
    assert run.data.tags["project.git_commit"] == git(repo_project, "rev-parse", "HEAD").strip()
    patch = Path(client.download_artifacts(tracker.version, DIFF_ARTIFACT, str(tmp_path))).read_text()
    assert "+width: 16" in patch


def _recorded(tags: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(run_id="abc123"), data=SimpleNamespace(tags=tags))


def test_reproduce_refuses_outside_the_recorded_project_in_one_line(
    repo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from normia.reproduce import recorded_project

    tags, _ = project_record(find_project(repo_project))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UserError) as err:
        recorded_project(_recorded(tags))
    message = str(err.value)
    assert "\n" not in message and "recorded in project 'my-study'" in message
    assert "this folder is in no project" in message and "cd into that project" in message
    assert f"--config-dir {repo_project.resolve() / 'configs'}" in message

    other = tmp_path / "other"
    (other / "configs").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "other"\ndependencies = ["normia"]\n')
    monkeypatch.chdir(other)
    with pytest.raises(UserError, match=r"this is other \("):
        recorded_project(_recorded(tags))

    assert recorded_project(_recorded({"normia.git_commit": "x"})) is None  # recorded outside any project
    monkeypatch.chdir(repo_project)
    # activate() exports NORMIA_CONFIG_PATH and PYTHONPATH and extends sys.path: put them back afterwards.
    monkeypatch.setenv("NORMIA_CONFIG_PATH", "")
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert recorded_project(_recorded(tags)).name == "my-study"


def test_reproduce_warns_when_the_project_commit_differs_or_a_tree_is_dirty(repo_project: Path) -> None:
    from normia.reproduce import code_warnings

    project = find_project(repo_project)
    tags, _ = project_record(project)
    assert not [w for w in code_warnings(_recorded(tags), project) if "project" in w]

    models = repo_project / "src/my_study/models.py"
    models.write_text(models.read_text() + "\n# a change\n")
    git(repo_project, "commit", "-q", "-am", "second")
    (repo_project / "configs/model/my_net.yaml").write_text("_target_: my_study.models.MyNet\nwidth: 16\n")
    recorded = {**tags, "project.git_dirty": "true", "project.version": "0.2.0"}
    warnings = [w for w in code_warnings(_recorded(recorded), project) if "project" in w]
    recorded_commit = tags["project.git_commit"][:12]
    assert len(warnings) == 4, warnings
    assert "version differs: the run was recorded with my-study 0.2.0, this is 0.3.0" in warnings[0]
    assert (
        f"recorded at its commit {recorded_commit}" in warnings[1]
        and f"git checkout {recorded_commit}" in warnings[1]
    )
    assert DIFF_ARTIFACT in warnings[2]
    assert warnings[3].startswith("the project tree has uncommitted changes")


@pytest.mark.slow
def test_train_records_the_project_and_reproduce_checks_it(
    repo_project: Path, normia_cli, tmp_path: Path
) -> None:
    """End to end: a run of the project's experiment from the project folder, then reproduce from elsewhere
    (refused, nothing written) and from the project at a later, dirty commit (warned, re-run)."""
    from mlflow.tracking import MlflowClient

    models = repo_project / "src/my_study/models.py"
    models.write_text(models.read_text().replace("width: int = 32", "width: int = 24"))
    first = normia_cli(
        "train", "experiment=my_study", *FAST, cwd=repo_project, env={"NORMIA_RECORD_DIFF": "1"}, timeout=300
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    (done,) = repo_project.glob("outputs/my_study/*/done.json")
    run_id = json.loads(done.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{repo_project / 'mlflow.db'}")
    tags = client.get_run(run_id).data.tags
    commit = git(repo_project, "rev-parse", "HEAD").strip()
    assert tags["project.name"] == "my-study" and tags["project.version"] == "0.3.0"
    assert tags["project.git_commit"] == commit and tags["project.git_dirty"] == "true"
    assert tags["project.root"] == str(repo_project.resolve())
    assert tags["normia.version.normia"] and tags["normia.git_commit"]  # normia's own beside the project's
    patch = Path(client.download_artifacts(run_id, DIFF_ARTIFACT, str(tmp_path))).read_text()
    assert "+    def __init__(self, in_features: int = 64, width: int = 24" in patch

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = f"sqlite:///{repo_project / 'mlflow.db'}"
    refused = normia_cli("reproduce", run_id, "--tracking-uri", store, cwd=elsewhere, timeout=120)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert refused.stderr.startswith("error: run ") and refused.stderr.count("\n") == 1
    assert "recorded in project 'my-study'" in refused.stderr
    assert list(elsewhere.iterdir()) == []
    experiment = client.get_experiment_by_name("my_study").experiment_id
    assert len(client.search_runs(experiment)) == 1

    git(repo_project, "commit", "-q", "-am", "width 24")
    again = normia_cli("reproduce", run_id, cwd=repo_project, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (
        f"warning: the project's code differs: the run was recorded at its commit {commit[:12]}"
        in again.stdout
    )
    assert "warning: the recorded run came from a project tree with uncommitted changes" in again.stdout
    assert "reproduced: every metric identical" in again.stdout  # the committed code is the code that ran
    runs = client.search_runs(experiment)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    new = next(r for r in runs if r.info.run_id != run_id)
    assert new.data.tags["project.git_dirty"] == "false" and new.data.tags["project.git_commit"] != commit
