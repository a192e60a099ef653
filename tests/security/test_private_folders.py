"""Issue 26 D: folders and files that others can write. The search folder (its plan names the code the workers
import), the Slurm job folder and an existing `normia init` folder must be this user's and writable by nobody else;
temporary files (search.json, the seeded mlflow.db, the store template) are created exclusively, so a link planted
at the old predictable name is never followed; a cached store template is used only if it is this user's, writable
by nobody else and empty of rows. Refusals: exit 2, one line, nothing written."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from normia.errors import UserError

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a folder that is another user's")
NOBODY = 65534


def cli(*argv: str) -> tuple[int, str, str]:
    from normia.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]


def loose(folder: Path, owner: int | None = None) -> Path:
    folder.mkdir(parents=True)
    if owner is not None:
        os.chown(folder, owner, owner)
    os.chmod(folder, 0o777)
    return folder


# --- normia search: the search folder -------------------------------------------------------------------------


@pytest.fixture
def space(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = workdir.parent / f"{workdir.name}-configs"
    (folder / "search").mkdir(parents=True)
    (folder / "search" / "good.yaml").write_text(
        "params:\n  optim.lr: {type: log-float, low: 1.0e-4, high: 1.0e-2}\n"
    )
    monkeypatch.setenv("NORMIA_CONFIG_PATH", str(folder))
    return folder


SEARCH = ("search", "experiment=quickstart", "search=good", "n_trials=1", "logger=none")


@AS_ROOT
@pytest.mark.parametrize("dry", [False, True])
def test_a_search_folder_of_another_user_that_anyone_can_write_is_refused(
    workdir: Path, space: Path, dry: bool
) -> None:
    folder = loose(workdir / "outputs" / "search" / "quickstart-good", owner=NOBODY)
    code, _, err = cli(*SEARCH[:1], *(["--dry-run"] if dry else []), *SEARCH[1:])
    assert_refused(code, err, str(folder), "belongs to another user", "study_name=")
    assert list(folder.iterdir()) == []  # no plan, no study written into it


def test_a_search_folder_of_ours_that_others_can_write_is_refused(workdir: Path, space: Path) -> None:
    folder = loose(workdir / "outputs" / "search" / "quickstart-good")
    code, _, err = cli(*SEARCH)
    assert_refused(code, err, str(folder), "can be written by others", "chmod go-w")
    assert list(folder.iterdir()) == []


def test_a_search_folder_that_is_a_link_is_refused(workdir: Path, space: Path) -> None:
    elsewhere = workdir.parent / "elsewhere"
    elsewhere.mkdir()
    (workdir / "outputs" / "search").mkdir(parents=True)
    (workdir / "outputs" / "search" / "quickstart-good").symlink_to(elsewhere)
    code, _, err = cli(*SEARCH)
    assert_refused(code, err, "is not a folder (a link?)")
    assert list(elsewhere.iterdir()) == []


def _plan(search_dir: Path):
    from normia.search.plan import SearchPlan

    return SearchPlan(
        study_name="s", storage="journal", search_dir=str(search_dir), n_trials=1, trial_overrides=[],
        params={}, monitor="val/loss", direction="minimize", config_dir="/somewhere/configs",
    )  # fmt: skip


def test_the_plan_is_written_through_an_exclusive_temporary_file(tmp_path: Path) -> None:
    """The old temporary name was .search.json.<pid>, opened with O_TRUNC: a link planted there was written through."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    search_dir = tmp_path / "search"
    search_dir.mkdir(mode=0o700)
    (search_dir / f".search.json.{os.getpid()}").symlink_to(victim)
    (search_dir / "search.json").symlink_to(victim)
    path, _ = _plan(search_dir).write()
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["config_dir"] == "/somewhere/configs"


def test_a_worker_refuses_a_plan_changed_after_it_was_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from normia.search.plan import read_plan
    from normia.search.worker import main as worker_main

    search_dir = tmp_path / "search"
    search_dir.mkdir(mode=0o700)
    path, digest = _plan(search_dir).write()
    assert read_plan(path, digest).config_dir == "/somewhere/configs"
    path.write_text(path.read_text().replace("/somewhere/configs", "/attacker/configs"))
    with pytest.raises(UserError, match="changed since normia search wrote it"):
        read_plan(path, digest)
    capsys.readouterr()
    # the worker says it in one line of its log and exits 2 (a refusal), rather than with a traceback
    assert worker_main([str(path), "--index", "0", "--sha256", digest]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: ") and "changed since normia search wrote it" in err and err.count("\n") == 1
    )


def test_the_slurm_array_job_carries_the_plan_digest(tmp_path: Path) -> None:
    from normia.search.slurm_array import SearchWorkerJob

    search_dir = tmp_path / "search"
    search_dir.mkdir(mode=0o700)
    path, digest = _plan(search_dir).write()
    path.write_text(path.read_text().replace("/somewhere/configs", "/attacker/configs"))
    with pytest.raises(UserError, match="changed since normia search wrote it"):
        SearchWorkerJob(str(path), None, digest)()


# --- the Slurm job folder (the shared helper) -------------------------------------------------------------------


def test_the_helper_makes_a_new_folder_private_and_refuses_a_loose_one(tmp_path: Path) -> None:
    from normia.private_paths import private_folder

    made = private_folder(tmp_path / "a" / "b", "fix it")
    assert stat.S_IMODE(os.lstat(made).st_mode) == 0o700
    with pytest.raises(UserError, match=r"can be written by others .*chmod go-w"):
        private_folder(loose(tmp_path / "loose"), "fix it")


# --- the sqlite store seeding -------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NORMIA_CACHE_DIR", str(folder))
    return folder


def _seed(folder: Path) -> Path:
    from normia.tracking.sqlite_seed import seed_sqlite_store

    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "mlflow.db"
    assert seed_sqlite_store(f"sqlite:///{store}")
    return store


def _user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_link_planted_at_the_seed_s_temporary_name_is_not_followed(tmp_path: Path, cache: Path) -> None:
    _seed(tmp_path / "first")  # the template exists
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / f".mlflow.db.{os.getpid()}.seed").symlink_to(victim)
    store = _seed(run)
    assert victim.read_text() == "precious\n"
    assert not store.is_symlink() and os.stat(store).st_nlink == 1
    assert (run / f".mlflow.db.{os.getpid()}.seed").is_symlink()  # left alone


def test_a_link_planted_at_the_template_s_temporary_name_is_not_followed(tmp_path: Path, cache: Path) -> None:
    from normia.tracking.sqlite_seed import template_path

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    cache.mkdir()
    template = template_path()
    (cache / f".{template.name}.{os.getpid()}.partial").symlink_to(victim)
    _seed(tmp_path / "run")
    assert victim.read_text() == "precious\n"
    assert template.is_file() and not template.is_symlink()


def _plant(template: Path, how: str) -> None:
    with contextlib.closing(sqlite3.connect(template)) as db:
        db.execute("PRAGMA user_version = 77")  # a mark: a store seeded from this template carries it
        if how == "rows":
            db.execute(
                "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
                "VALUES (0, 'Default', '/tmp/elsewhere', 'active')"
            )
        if how == "workspace":
            db.execute("UPDATE workspaces SET default_artifact_root = '/tmp/elsewhere'")
        db.commit()
    if how == "writable":
        os.chmod(template, 0o666)
    if how == "theirs":
        os.chown(template, NOBODY, NOBODY)


@pytest.mark.parametrize("how", ["rows", "workspace", "writable", pytest.param("theirs", marks=AS_ROOT)])
def test_a_planted_template_is_not_used(tmp_path: Path, cache: Path, how: str) -> None:
    from normia.tracking.sqlite_seed import template_path

    _seed(tmp_path / "first")
    _plant(template_path(), how)
    store = _seed(tmp_path / "run")
    assert _user_version(store) == 0
    with contextlib.closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 0


# --- normia init ----------------------------------------------------------------------------------------------------


@AS_ROOT
def test_init_refuses_an_empty_folder_of_another_user_that_anyone_can_write(tmp_path: Path) -> None:
    folder = loose(tmp_path / "shared", owner=NOBODY)
    code, _, err = cli("init", str(folder))
    assert_refused(code, err, str(folder), "belongs to another user")
    assert list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]


def test_init_refuses_an_empty_folder_that_others_can_write(tmp_path: Path) -> None:
    folder = loose(tmp_path / "study")
    code, _, err = cli("init", str(folder))
    assert_refused(code, err, str(folder), "can be written by others")
    assert list(folder.iterdir()) == []
