"""Where config options live: the project's config folders (if any) layered over normia's own tree.

normia's tree is inside the installed package (wheel) or the checkout (editable install). A project's folders come
first: their options are added to normia's groups and win a name clash (`model=my_net`, or a project's own
`trainer=gpu`), while normia's other options (`trainer=ddp`, `launcher=austral`, `debug=...`) stay usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class ConfigSource(NamedTuple):
    """One layer of the config search path: 'project' or 'normia', and its folder."""

    label: str
    folder: Path


def configs_dir() -> Path:
    """normia's own configs/ tree; `normia/configs` is a symlink in a checkout and a real folder in a wheel."""
    here = Path(__file__).resolve().parent.parent / "configs"
    if (here / "train.yaml").is_file():
        return here
    raise FileNotFoundError(
        f"normia's configs/ tree is missing from {here}: reinstall normia (pip install .)"
    )


def config_sources() -> list[ConfigSource]:
    """The layers, first wins: the current project's config folders, then normia's tree."""
    from normia.project import current_project

    project = current_project()
    layers = [ConfigSource("project", folder) for folder in (project.config_dirs if project else ())]
    return [*layers, ConfigSource("normia", configs_dir())]


def group_options(group: str) -> list[str]:
    """The option names of one config group across all layers (e.g. 'experiment' -> ['my_study', 'quickstart'])."""
    names = set()
    for source in config_sources():
        folder = source.folder / group
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def config_groups() -> list[str]:
    """Group names across all layers (folders of the config trees)."""
    names = set()
    for source in config_sources():
        names.update(
            p.name for p in source.folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
        )
    return sorted(names)


def group_folders(group: str) -> list[Path]:
    """The folders holding a group's options, first layer first (for 'ls' hints)."""
    return [s.folder / group for s in config_sources() if (s.folder / group).is_dir()] or [
        configs_dir() / group
    ]


def option_sources(group: str, option: str) -> list[ConfigSource]:
    """Every layer that defines group/option.yaml, first (the one used) first; more than one: a shadowed option."""
    return [s for s in config_sources() if (s.folder / group / f"{option}.yaml").is_file()]
