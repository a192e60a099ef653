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
from pathlib import Path

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
    store meanwhile, its file is kept."""
    if not uri.startswith(SQLITE) or "?" in uri:
        return False
    target = Path(uri[len(SQLITE) :])
    if target.exists() or not target.parent.is_dir():
        return False
    try:
        template = template_path()
        if template.is_file() and not _is_migrated_store(template):
            template.unlink(missing_ok=True)  # corrupt or truncated (disk full, a crash): made again below
        if not template.is_file():
            _make_template(template)
        if not _is_migrated_store(template):
            return False
        partial = target.with_name(f".{target.name}.{os.getpid()}.seed")
        try:
            shutil.copyfile(template, partial)
            os.link(partial, target)  # atomic, and refuses to replace a store another process made meanwhile
        finally:
            partial.unlink(missing_ok=True)
        return True
    except Exception:  # an optimisation only: MLflow makes the store as usual
        return False


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
    template, written under a temporary name and renamed into place."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    template.parent.mkdir(parents=True, exist_ok=True)
    partial = template.with_name(f".{template.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        engine = create_sqlalchemy_engine_with_retry(SQLITE + str(partial))
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(partial, template)
    finally:
        partial.unlink(missing_ok=True)  # a failed build leaves nothing in the cache
