"""A refused job leaves nothing behind: the run folder this job created is removed when the job is refused
(a UserError) before its first training step. A resumed run's folder is never touched."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from normia.errors import EXIT_USER_ERROR, UserError


@contextmanager
def nothing_left_if_refused(
    output_dir: Path | None, root: Path, started: Callable[[], bool]
) -> Iterator[None]:
    """Wraps a job from the creation of its fresh output_dir on (None: nothing to remove); `started()` tells whether training began (then
    the folder holds a real, failed run and stays). Errors: re-raises whatever the job raised."""
    try:
        yield
    except UserError as err:
        # A refusal (exit 2) only: a run that failed (e.g. diverged at its first step, exit 3) keeps its folder.
        if output_dir is not None and err.exit_code == EXIT_USER_ERROR and not started():
            remove_run_folder(output_dir, root)
        raise


def remove_run_folder(output_dir: Path, root: Path) -> None:
    """The run folder, then its parents up to (not including) paths.output_root's parent, while they are empty."""
    shutil.rmtree(output_dir, ignore_errors=True)
    stop = root.absolute().parent
    parent = output_dir.absolute().parent
    while parent != stop and stop in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
