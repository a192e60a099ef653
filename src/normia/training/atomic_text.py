"""Small text files of a run (config.yaml, done.json) written like checkpoints: a new temporary file beside the target
(created, never opened through a link), then an atomic rename over it. A plain write follows a symlink someone put
in the run folder and writes wherever it points; a rename replaces the link itself. Readers see the old file or
the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Write a file through a new temporary beside it (mode 0600, mkstemp's), fsync, then rename over `path`; the
    temporary is removed if anything fails. Shared by the text files of a run and the checkpoints."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Mode 0600 like the checkpoints beside it (mkstemp's); the folder's own mode decides who may enter."""
    write_atomic(path, lambda handle: handle.write(text))
