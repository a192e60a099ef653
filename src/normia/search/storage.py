"""Where the study lives. Default: Optuna's journal file in the search folder (no server; an append-only log with a
lock that works on a shared filesystem, so Slurm tasks on several nodes can share it). Or any RDB URL that
SQLAlchemy understands (`storage=sqlite:///study.db`, `storage=postgresql://user@host/db`)."""

from __future__ import annotations

import json
import os
import sys
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
    """An Optuna storage for this location (creates the journal file or the RDB tables when missing). A journal
    with a damaged line before its end is refused (UserError); a torn last line is cut at the next write."""
    import optuna

    if is_journal(location):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            check_journal(path)
        return JournalStorage(JournalFileBackend(location, lock_obj=TornTailCuttingLock(location)))
    return optuna.storages.RDBStorage(location)


# A worker killed mid-write (SIGKILL after scancel's grace time, a node failure, a full quota) leaves the journal's
# last line without its newline. Optuna's reader skips such a last line, but its writer appends to it, which fuses
# the two records into one line that no reader can parse again (JSONDecodeError on every later open).
#
# Why the torn line is cut under Optuna's own journal lock, and not "once it has been torn for a while": Optuna
# appends only while holding <journal>.lock (JournalFileSymlinkLock, the default of JournalFileBackend, the same
# link for every process on every node of a shared filesystem). So a last line without its newline, seen while
# holding that lock, is never a write in progress: its writer is dead. Seen without the lock it may be a live
# worker's write on another node, and an age rule would depend on the filesystem's clocks and on how slow its
# writes can be. The cut is made by every append (a stat and a one-byte read when nothing is torn), not only by the
# first one: a worker that keeps running while another dies mid-write must not append to the torn line either.
# The one limit is Optuna's: a lock held longer than its grace period (30 s) is taken over by force.


class TornTailCuttingLock:
    """Optuna's journal lock (JournalFileSymlinkLock: the <journal>.lock link) which, once acquired, cuts a torn last
    line (see above). A module-level class wrapping it, not a subclass: the storage stays picklable and this module
    does not import Optuna (`normia search --help` stays light)."""

    def __init__(self, location: str) -> None:
        from optuna.storages.journal import JournalFileSymlinkLock

        self._path = Path(location)
        self._lock = JournalFileSymlinkLock(location)

    def acquire(self) -> bool:
        self._lock.acquire()
        try:
            cut_torn_tail(self._path)
        except BaseException:
            self._lock.release()
            raise
        return True

    def release(self) -> None:
        self._lock.release()


def cut_torn_tail(path: Path) -> int:
    """Cut the last line of the journal when it has no newline (a record its dead writer left unfinished), saying so
    on stderr; returns the bytes dropped. Call only while holding the journal's lock (see above)."""
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        keep = _last_line_start(handle, size)
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    dropped = size - keep
    print(
        f"warning: {path}: dropped its last {dropped} bytes, a record left unfinished by a worker that died "
        "mid-write (the trial it belonged to is run again, or lost if it had not started)",
        file=sys.stderr,
        flush=True,
    )
    return dropped


def _last_line_start(handle: Any, size: int, chunk: int = 65536) -> int:
    """The offset just after the last newline before `size` (0 when there is none), reading backwards."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def check_journal(path: Path) -> None:
    """Every complete line of the journal must be a record: a damaged one (a torn record that another was appended
    to before normia cut torn lines, or an edit) makes every later read fail, so it is refused in one line naming
    it and the fix. The last line without its newline is not checked: it is a torn write, cut at the next write."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            try:
                json.loads(line)
            except ValueError as err:
                raise UserError(_damaged_line(path, number, line, err)) from None


def _damaged_line(path: Path, number: int, line: bytes, err: ValueError) -> str:
    """The refusal of a damaged line: a torn record with a whole one after it keeps the whole one (removing a
    record that created a trial would renumber every later trial), anything else is removed."""
    for start in _record_starts(line):
        try:
            json.loads(line[start:])
        except ValueError:
            continue
        return (
            f"{path} line {number} is damaged: a record left unfinished by a worker that died mid-write, with the "
            f"next record appended to it; restore the file from a copy, or delete that line's first {start} bytes "
            "(the unfinished record; the trial it belonged to is lost) and run the search again"
        )
    reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
    return (
        f"{path} line {number} is not an Optuna journal record ({reason}); restore the file from a copy, or "
        f"delete line {number} and run the search again"
    )


def _record_starts(line: bytes) -> list[int]:
    """Where a record may begin inside a line, after its first byte (Optuna writes each as {"op_code":...})."""
    starts, at = [], line.find(b'{"op_code"', 1)
    while at > 0:
        starts.append(at)
        at = line.find(b'{"op_code"', at + 1)
    return starts


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
