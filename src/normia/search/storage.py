"""Where the study lives. Default: Optuna's journal file in the search folder (no server; an append-only log with a
lock that works on a shared filesystem, so Slurm tasks on several nodes can share it). Or any RDB URL that
SQLAlchemy understands (`storage=sqlite:///study.db`, `storage=postgresql://user@host/db`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from normia.errors import UserError

JOURNAL = "study.journal"
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def storage_location(storage: str | None, search_dir: Path) -> str:
    """The storage as text: a journal file path, or an RDB URL. UserError for anything else."""
    if not storage:
        return str(search_dir / JOURNAL)
    scheme = storage.partition(":")[0].split("+")[0]
    if "://" in storage:
        if scheme not in RDB_SCHEMES:
            raise UserError(
                f"storage={storage}: unsupported scheme '{scheme}'; give an RDB URL (sqlite:///file.db, "
                "postgresql://...) or a journal file path"
            )
        if scheme == "sqlite":  # sqlite:///study.db: the same file for every worker, whatever its folder
            from normia.tracking.uri import absolute_sqlite

            return absolute_sqlite(storage)
        return storage
    return str(Path(storage).absolute())


def is_journal(location: str) -> bool:
    return "://" not in location


def study_may_exist(location: str) -> bool:
    """False when opening the storage would create it (a new study): nothing to compare on resume."""
    if is_journal(location):
        return Path(location).is_file() and Path(location).stat().st_size > 0
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///")).is_file()
    return True


def open_storage(location: str) -> Any:
    """An Optuna storage for this location (creates the journal file or the RDB tables when missing)."""
    import optuna

    if is_journal(location):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(location))
    return optuna.storages.RDBStorage(location)


def existing_study(location: str, study_name: str) -> Any | None:
    """The stored study of that name, or None (without creating anything when the storage does not exist)."""
    import optuna

    if not study_may_exist(location):
        return None
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(location))
    except KeyError:
        return None


def shown_storage(storage: str) -> str:
    """The storage URL as printed and tagged (search.storage): without userinfo, secret query parameters' values
    (`?password=X`) and the values of secret environment variables."""
    from normia.config.masking import mask_text

    return mask_text(storage)
