"""A new sqlite MLflow store in a fraction of the time: MLflow builds a fresh store by running its ~60 schema migrations
(1.7-2.2 s on a 2-core machine, a fifth of the quickstart's whole process, issue 15). normia runs them once per MLflow
version into an empty template kept in the user's cache, and a run whose sqlite file does not exist yet starts from a
copy of it. MLflow then finds every table at the latest revision and skips the migrations; everything else (the
Default experiment, the artifact folder) it does itself, as for a store it made.

Any failure here leaves the store to MLflow (the template is an optimisation, never a requirement)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from normia.private_paths import exclusive_temp

SQLITE = "sqlite:///"
CACHE_ENV = "NORMIA_CACHE_DIR"


def cache_dir() -> Path:
    """$NORMIA_CACHE_DIR, else $XDG_CACHE_HOME/normia, else ~/.cache/normia."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "normia"


def template_path() -> Path:
    """The empty, fully migrated store of the installed MLflow version (its schema changes with the version)."""
    import mlflow

    return cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"


def seed_sqlite_store(uri: str) -> bool:
    """For `sqlite:////abs/path.db` whose file does not exist: copy the template there (made first if missing).
    True when the store was seeded; False for any other URI, an existing file, or any failure (MLflow then
    creates the store itself, as without this function). Never replaces a file: if another process creates the
    store meanwhile, its file is kept.

    Nobody else can steer it: the copy goes through an exclusive temporary file beside the store (a link planted
    there is never followed), the template is used only if it is this user's regular file that nobody else can
    write, and the copy is linked into place only if it is an empty store (no row but alembic's revision: a planted
    template with an experiment would divert the run's artifacts)."""
    if not uri.startswith(SQLITE) or "?" in uri:
        return False
    target = Path(uri[len(SQLITE) :])
    if target.exists() or target.is_symlink() or not target.parent.is_dir():
        return False
    try:
        template = template_path()
        if not _usable_template(template):
            _make_template(template)  # missing, corrupt, or not one to trust: made again (atomically)
        with exclusive_temp(target) as (fd, partial):
            if not _copy_template(template, fd) or not _is_empty_store(partial):
                return False
            os.link(partial, target)  # atomic, and refuses to replace a store another process made meanwhile
        return True
    except Exception:  # an optimisation only: MLflow makes the store as usual
        return False


def _own_private_file(info: os.stat_result) -> bool:
    """A regular file of this user's that nobody else can write."""
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _usable_template(template: Path) -> bool:
    try:
        info = os.lstat(template)
    except OSError:
        return False
    return _own_private_file(info) and _is_empty_store(template)


def _copy_template(template: Path, out_fd: int) -> bool:
    """Copy the template into out_fd through one descriptor that follows no link and is checked as opened (this
    user's, writable by nobody else); False for a template that is not."""
    fd = os.open(template, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not _own_private_file(os.fstat(fd)):
            return False
        with os.fdopen(os.dup(fd), "rb") as src, os.fdopen(os.dup(out_fd), "wb") as dst:
            shutil.copyfileobj(src, dst)
        return True
    finally:
        os.close(fd)


def _is_empty_store(path: Path) -> bool:
    """A migrated store (see _is_migrated_store) holding no row but what MLflow's migrations insert: alembic's one
    revision and the 'default' workspace with no setting of its own (an artifact root there would divert runs)."""
    import sqlite3

    if not _is_migrated_store(path):
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return all(
                db.execute(
                    f"SELECT 1 FROM {_quoted(name)} WHERE NOT ({_seeded(db, name)}) LIMIT 1"
                ).fetchone()
                is None
                for name in tables
                if name != "alembic_version"
            )
    except sqlite3.Error:
        return False


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _seeded(db: object, table: str) -> str:
    """SQL true for the rows MLflow's migrations insert in table (the 'default' workspace, every setting NULL)."""
    if table != "workspaces":
        return "0"
    columns = [row[1] for row in db.execute(f"PRAGMA table_info({_quoted(table)})")]  # type: ignore[attr-defined]
    unset = [f"{_quoted(c)} IS NULL" for c in columns if c not in ("name", "description")]
    return " AND ".join(["name = 'default'", *unset])


def _is_migrated_store(path: Path) -> bool:
    """The file is a readable sqlite database whose schema carries an alembic revision (what MLflow's migrations
    leave), so a copy of it is a store MLflow opens without running them; False for anything else."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    return len(rows) == 1 and bool(rows[0][0])


def _make_template(template: Path) -> None:
    """Run MLflow's own table creation and migrations (what its store does for an empty database) into the
    template, written under an exclusive temporary name and renamed into place (a failed build leaves nothing)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    template.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_temp(template) as (_, partial):
        engine = create_sqlalchemy_engine_with_retry(SQLITE + str(partial))
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(partial, template)
