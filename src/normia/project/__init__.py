"""A researcher's own project: its configs layered over normia's, its code importable, its git state recorded.

Kept import-light (no torch, no hydra): the CLI calls `current_project()` before any heavy import.
"""

from normia.project.discover import (
    CONFIG_PATH_ENV,
    Project,
    activate,
    current_project,
    find_project,
    project_from_config_dir,
)

__all__ = [
    "CONFIG_PATH_ENV",
    "Project",
    "activate",
    "current_project",
    "find_project",
    "project_from_config_dir",
]
