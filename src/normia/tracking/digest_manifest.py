"""Data digests kept across processes, so that a run start or a requeue does not re-read a corpus it has already
read: each run start digests every input file in full (~80 ms per 100 MB here; a 1 TB corpus ~13 minutes at
every requeue). A file's digest is reused when its (resolved path, size, mtime in ns, inode, device) are all those
recorded with it; any change of one of them (a rewrite, a copy, a `touch`) makes it read again.

The manifest is one JSON file, by default in the user's cache ($XDG_CACHE_HOME/normia/digests.json, else
~/.cache/normia/digests.json), shared by every run of this user on this filesystem (a run and its requeues, and the
next run on the same corpus). NORMIA_DIGEST_CACHE=PATH puts it elsewhere (a project's shared scratch);
NORMIA_DIGEST_CACHE=off reads every file every time. Writes merge with what is on disk and replace the file
atomically (processes that write at once lose at most each other's new entries, never the file). Files under
MIN_BYTES are not kept: reading them costs about what a lookup does. Import-light: json, os only."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_ENV = "NORMIA_DIGEST_CACHE"
MIN_BYTES = 1 << 20
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


def stat_key(path: Path, st: os.stat_result) -> str:
    """The identity a digest is valid for: path, size, mtime (ns), inode and device."""
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"


class DigestManifest:
    """The manifest of this process: read once, added to, written by save()."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None
        self._new: dict[str, dict[str, Any]] = {}
        self.reused = 0
        self.computed = 0

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
        return found

    def put(self, key: str, fields: dict[str, Any], size: int) -> None:
        self.computed += 1
        if self.path is None or size < MIN_BYTES:
            return
        self._load()[key] = fields
        self._new[key] = fields

    def save(self) -> None:
        """Merge this process's new entries into the file on disk (atomic replace); never raises: a cache that
        cannot be written only costs the next run a re-read."""
        if self.path is None or not self._new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = _read(self.path)
            merged.update(self._new)
            fd, tmp = tempfile.mkstemp(prefix=".digests.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": VERSION, "files": merged}, handle)
            os.replace(tmp, self.path)
            self._new.clear()
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
