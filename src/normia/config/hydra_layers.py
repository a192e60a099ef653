"""Hydra initialised over several config folders, the project's before normia's.

Why not `initialize_config_dir` + `hydra.searchpath`: that search path is appended AFTER the primary folder, so a
project could add options but never override normia's, and with the project folder as primary Hydra caches the
primary config `train` as missing before the search path is read. So this does what `initialize_config_dir` does
(hydra/initialize.py, hydra-core 1.3) with the project folders inserted before normia's `main` source: the
documented ConfigSearchPath.prepend with an anchor, the same API Hydra's SearchPathPlugins use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from normia.config.paths import ConfigSource


@contextmanager
def layered_hydra(sources: Sequence[ConfigSource], job_name: str = "normia") -> Iterator[None]:
    """Within the block, hydra.compose searches `sources` in order (the last one, normia's tree, is primary)."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    try:
        version.setbase("1.3")
        search_path = create_config_search_path(search_path_dir=str(sources[-1].folder))
        for source in sources[:-1]:
            search_path.prepend(
                "normia-project", f"file://{source.folder}", anchor=SearchPathQuery(provider="main")
            )
        Hydra.create_main_hydra2(task_name=job_name, config_search_path=search_path)
        yield
    finally:
        restore_gh_from_backup(backup)
