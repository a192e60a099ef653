"""Small text files of a run (config.yaml, done.json) written like checkpoints: a new temporary file beside the target
(created, never opened through a link), then an atomic rename over it. A plain write follows a symlink someone put
in the run folder and writes wherever it points; a rename replaces the link itself. Readers see the old file or
the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Mode 0600 like the checkpoints beside it (mkstemp's); the folder's own mode decides who may enter."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
