"""Data digests kept across processes, so that a run start or a requeue does not re-read a corpus it has already
read: each run start digests every input file in full (~80 ms per 100 MB here; a 1 TB corpus ~13 minutes at
every requeue). A file's digest is reused when its (resolved path, size, mtime in ns, inode, device) are all those
recorded with it; any change of one of them (a rewrite, a copy, a `touch`) makes it read again.

The manifest is one JSON file, by default in the user's cache ($XDG_CACHE_HOME/normia/digests.json, else
~/.cache/normia/digests.json), shared by every run of this user on this filesystem (a run and its requeues, and the
next run on the same corpus). NORMIA_DIGEST_CACHE=PATH puts it elsewhere (a project's shared scratch);
NORMIA_DIGEST_CACHE=off reads every file every time. Writes merge with what is on disk and replace the file
atomically (processes that write at once lose at most each other's new entries, never the file). Files under
MIN_BYTES are not kept: reading them costs about what a lookup does.

Verified lazily: a stat identity can lie (a file rewritten in place with its old mtime put back, e.g. by `rsync
--inplace` or `touch -d`), so every process that reuses digests re-reads some of them, least recently verified first,
up to NORMIA_DIGEST_VERIFY_MB (1024 by default; 0: never) per process; a digest that no longer matches is dropped and
computed again (data_inputs.verify_reused). A corpus is therefore re-checked a slice at a time across requeues instead
of in full at each one. Import-light: json, os, time only."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

MANIFEST_ENV = "NORMIA_DIGEST_CACHE"
MIN_BYTES = 1 << 20
VERIFY_ENV = "NORMIA_DIGEST_VERIFY_MB"
DEFAULT_VERIFY_MB = 1024
VERSION = 1


def manifest_path() -> Path | None:
    """Where the manifest lives, or None when NORMIA_DIGEST_CACHE=off."""
    configured = os.environ.get(MANIFEST_ENV, "").strip()
    if configured.lower() in ("off", "none", "0", "false"):
        return None
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "normia" / "digests.json"


def verify_budget_bytes() -> int:
    """Bytes of reused digests this process re-reads to verify them (NORMIA_DIGEST_VERIFY_MB, 1024 MiB by default).
    A value that is not a number of MiB >= 0 gets a warning naming the variable, and the default."""
    raw = os.environ.get(VERIFY_ENV, "").strip()
    if not raw:
        return DEFAULT_VERIFY_MB << 20
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        print(
            f"warning: {VERIFY_ENV}={raw!r} is not a number of MiB >= 0 (0 turns the re-verification off); "
            f"using {DEFAULT_VERIFY_MB}",
            flush=True,
        )
        return DEFAULT_VERIFY_MB << 20
    return int(value * (1 << 20))


def stat_key(path: Path, st: os.stat_result) -> str:
    """The identity a digest is valid for: path, size, mtime (ns), inode and device."""
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"


class DigestManifest:
    """The manifest of this process: read once, added to, written by save()."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None
        self._new: dict[str, dict[str, Any]] = {}
        self._dropped: set[str] = set()
        self.reused = 0
        self.computed = 0
        self.reused_keys: dict[str, None] = {}  # an ordered set: in the order they were reused
        self._checked: set[str] = set()
        self._verify_left: int | None = None  # of this process's budget

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = _read(self.path) if self.path is not None else {}
        return self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        """The recorded digest fields for this identity, or None."""
        if self.path is None:
            return None
        found = self._load().get(key)
        if found is not None:
            self.reused += 1
            self.reused_keys[key] = None
        return found

    def entry(self, key: str) -> dict[str, Any] | None:
        """The recorded fields for this identity, without counting a reuse."""
        return self._load().get(key) if self.path is not None else None

    def due_for_check(self, budget_bytes: int) -> list[str]:
        """The reused identities to re-read now: least recently verified first, each at most once per process, while
        their sizes fit what is left of this process's budget (`budget_bytes` on the first call)."""
        if self._verify_left is None:
            self._verify_left = budget_bytes
        entries = self._load()
        ordered = sorted(
            (k for k in self.reused_keys if k in entries and k not in self._checked),
            key=lambda k: entries[k].get("verified_at", 0.0),
        )
        due = []
        for key in ordered:
            size = int(entries[key].get("size") or 0)
            if size <= self._verify_left:
                due.append(key)
                self._checked.add(key)
                self._verify_left -= size
        return due

    def confirm(self, key: str) -> None:
        """A re-read gave the recorded digest: remember when, so that others are verified first next time."""
        entry = self._load().get(key)
        if entry is not None:
            entry["verified_at"] = time.time()
            self._new[key] = entry

    def drop(self, key: str) -> None:
        """A re-read disagreed: the entry is wrong and leaves the manifest (here and on disk at save())."""
        self._load().pop(key, None)
        self._new.pop(key, None)
        self._dropped.add(key)

    def put(self, key: str, fields: dict[str, Any], size: int) -> None:
        self.computed += 1
        if self.path is None or size < MIN_BYTES:
            return
        fields = {**fields, "verified_at": time.time()}
        self._load()[key] = fields
        self._new[key] = fields
        self._dropped.discard(key)

    def save(self) -> None:
        """Merge this process's new entries into the file on disk (atomic replace); never raises: a cache that
        cannot be written only costs the next run a re-read."""
        if self.path is None or not (self._new or self._dropped):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = _read(self.path)
            merged.update(self._new)
            for key in self._dropped:
                merged.pop(key, None)
            fd, tmp = tempfile.mkstemp(prefix=".digests.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": VERSION, "files": merged}, handle)
            os.replace(tmp, self.path)
            self._new.clear()
            self._dropped.clear()
        except OSError as err:
            print(f"warning: data digest cache {self.path} not written ({err.strerror or err})", flush=True)


def _read(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable or damaged: rebuilt from scratch
    if (
        not isinstance(data, dict)
        or data.get("version") != VERSION
        or not isinstance(data.get("files"), dict)
    ):
        return {}
    return data["files"]


_MANIFEST: DigestManifest | None = None


def manifest() -> DigestManifest:
    """This process's manifest (created on first use, at the place the environment says then)."""
    global _MANIFEST
    path = manifest_path()
    if _MANIFEST is None or _MANIFEST.path != path:
        _MANIFEST = DigestManifest(path)
    return _MANIFEST
