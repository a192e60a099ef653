"""Folders and files that nobody else can swap: a private folder (this user's, mode 0700, refused when another
user's, a link, or writable by others) and files written through an exclusive temporary name in the target's own
folder (created new with O_EXCL, so a link planted at a predictable name is never followed), then linked or renamed
into place. Standard library only: imported by light paths (the Slurm launcher, the search, the store seeding)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from normia.errors import UserError


def check_private_folder(folder: Path, fix: str) -> bool:
    """Whether folder exists; an existing one must be a real folder (not a link), owned by this user and writable
    by nobody else. Raises UserError naming the folder, what is wrong and `fix` (the way out, e.g. the key to set)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UserError(f"{folder} is not a folder (a link?): {fix}")
    if info.st_uid != os.geteuid():
        raise UserError(
            f"{folder} belongs to another user (uid {info.st_uid}), who could change what normia reads from it: {fix}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(
            f"{folder} can be written by others (mode {stat.S_IMODE(info.st_mode):o}), who could have changed what "
            f"normia reads from it: check its contents, then chmod go-w {folder}; or {fix}"
        )
    return True


def private_folder(folder: Path, fix: str) -> Path:
    """folder, created with mode 0700 when missing (its parents as usual), else checked by check_private_folder
    and made 0700 (nobody else may read it either). Raises UserError as check_private_folder does."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    check_private_folder(folder, fix)
    os.chmod(folder, 0o700)
    return folder


@contextlib.contextmanager
def exclusive_temp(target: Path) -> Iterator[tuple[int, Path]]:
    """(fd, path) of a new, empty file of mode 0600 beside target, under a random hidden name, created exclusively
    (a file or link already at that name is never opened). The path is removed on exit unless it was renamed or
    the caller removed it; the fd is the caller's to close. Raises OSError when the folder refuses the file."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    path = Path(name)
    try:
        yield fd, path
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        path.unlink(missing_ok=True)


def write_private(target: Path, data: bytes) -> Path:
    """Replace target with a new file of mode 0600 holding data, atomically (exclusive temporary file + rename: a
    link at target is replaced, never written through). Raises OSError when the folder refuses it."""
    with exclusive_temp(target) as (fd, path):
        with os.fdopen(os.dup(fd), "wb") as handle:
            handle.write(data)
        os.replace(path, target)
    return target
