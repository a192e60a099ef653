"""Find the researcher's project: its config folders (layered over normia's), the folders its code imports from,
and the package names its configs may name as `_target_`s.

Where a project comes from, first match wins:
1. `--config-dir DIR` (the CLI calls `activate`, which exports NORMIA_CONFIG_PATH to every child process);
2. NORMIA_CONFIG_PATH: one or more config folders separated by os.pathsep, the first one winning a name clash;
3. the current folder and its parents: the nearest `pyproject.toml` whose `[tool.normia] config_dir` names a
   folder, or that depends on normia and has a `configs/` folder beside it (what `normia init` writes).

Why a pyproject that names normia: a `configs/` folder beside any pyproject (a Hydra app of one's own) must not
silently change what `normia train` composes.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from normia.errors import UserError

CONFIG_PATH_ENV = "NORMIA_CONFIG_PATH"
DEPENDS_ON_NORMIA = re.compile(r"^\s*normia(\s*[\[<>=!~;@ ]|\s*$)", re.IGNORECASE)


@dataclass(frozen=True)
class Project:
    """A researcher's project, as normia sees it.

    root: the folder holding pyproject.toml (None for config folders outside any project).
    config_dirs: absolute config folders, searched before normia's own (the first wins a name clash).
    name, version: from pyproject's [project] table (None when absent).
    import_paths: folders put first on sys.path so that `_target_: PKG.models.MyNet` imports without installing.
    packages: top-level packages found there; their names are trusted `_target_` prefixes (the project's own code).
    """

    root: Path | None
    config_dirs: tuple[Path, ...]
    name: str | None = None
    version: str | None = None
    import_paths: tuple[Path, ...] = ()
    packages: tuple[str, ...] = ()
    extra_trusted: tuple[str, ...] = field(default=())

    @property
    def trusted_prefixes(self) -> tuple[str, ...]:
        """`_target_` prefixes this project vouches for: its own packages, and `[tool.normia] trusted_targets`."""
        return (*(f"{p}." for p in self.packages), *self.extra_trusted)

    def describe(self) -> str:
        """One line for the terminal: name (version) at root."""
        label = self.name or (self.root.name if self.root else "project")
        version = f" {self.version}" if self.version else ""
        where = self.root if self.root else ", ".join(map(str, self.config_dirs))
        return f"{label}{version} ({where})"


def read_pyproject(path: Path) -> dict[str, Any]:
    """pyproject.toml as a dict; a file that does not parse is a UserError naming it (it would break the build too)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UserError(
            f"{path} cannot be read as TOML ({err}); fix it or run normia outside this folder"
        ) from None


def _depends_on_normia(data: dict[str, Any]) -> bool:
    project = data.get("project") or {}
    deps = list(project.get("dependencies") or [])
    for extra in (project.get("optional-dependencies") or {}).values():
        deps += list(extra or [])
    return any(isinstance(d, str) and DEPENDS_ON_NORMIA.match(d) for d in deps)


def _normia_configs() -> Path | None:
    from normia.config.paths import configs_dir

    try:
        return configs_dir().resolve()
    except FileNotFoundError:
        return None


def _from_pyproject(root: Path, data: dict[str, Any]) -> Project | None:
    """The project rooted at `root`, or None when this pyproject is not a normia project."""
    project = data.get("project") or {}
    if str(project.get("name", "")).lower() == "normia":
        return None  # normia's own checkout: its configs are the base layer already
    tool = (data.get("tool") or {}).get("normia") or {}
    declared = tool.get("config_dir")
    if declared is not None:
        folder = (root / str(declared)).resolve()
        if not folder.is_dir():
            raise UserError(
                f"{root / 'pyproject.toml'}: [tool.normia] config_dir = '{declared}' is not a folder; "
                f"create {folder} or fix the setting"
            )
    elif (root / "configs").is_dir() and _depends_on_normia(data):
        folder = (root / "configs").resolve()
    else:
        return None
    trusted = tool.get("trusted_targets") or []
    if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
        raise UserError(f"{root / 'pyproject.toml'}: [tool.normia] trusted_targets must be a list of strings")
    paths = _import_paths(root)
    return Project(
        root=root.resolve(),
        config_dirs=(folder,),
        name=str(project["name"]) if project.get("name") else None,
        version=str(project["version"]) if project.get("version") else None,
        import_paths=paths,
        packages=_packages(paths),
        extra_trusted=tuple(trusted),
    )


def _import_paths(root: Path) -> tuple[Path, ...]:
    """src/ layout first (what `normia init` writes), else the flat layout (packages beside pyproject.toml)."""
    src = root / "src"
    return (src.resolve(),) if src.is_dir() else (root.resolve(),)


def _packages(paths: tuple[Path, ...]) -> tuple[str, ...]:
    names = []
    for folder in paths:
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            if (
                (child / "__init__.py").is_file()
                and child.name.isidentifier()
                and child.name not in ("tests", "normia")
            ):
                names.append(child.name)
    return tuple(names)


def find_project(start: Path | None = None) -> Project | None:
    """The project holding `start` (default: the current folder): the nearest pyproject.toml upward decides."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            return _from_pyproject(candidate, read_pyproject(pyproject))
    return None


def project_from_config_dir(dirs: list[str | Path], origin: str = "--config-dir") -> Project:
    """The project given by explicit config folders (`--config-dir`, NORMIA_CONFIG_PATH).

    Its code and name come from the nearest project above the first folder, when there is one.
    Raises UserError for a folder that does not exist.
    """
    folders: list[Path] = []
    normia_own = _normia_configs()
    for text in dirs:
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"{origin}: config folder '{text}' does not exist; give a folder holding config groups "
                "(experiment/, model/, ...), e.g. the configs/ that normia init wrote"
            )
        folder = folder.resolve()
        if folder != normia_own and folder not in folders:
            folders.append(folder)
    if not folders:
        return Project(root=None, config_dirs=())
    around = None
    for candidate in (folders[0], *folders[0].parents):
        if (candidate / "pyproject.toml").is_file():
            around = _from_pyproject(candidate, read_pyproject(candidate / "pyproject.toml"))
            break
    if around is None:
        return Project(root=None, config_dirs=tuple(folders))
    return replace(around, config_dirs=tuple(folders))


def current_project() -> Project | None:
    """The project of this process: NORMIA_CONFIG_PATH when set (by --config-dir or the user), else the folders
    around the current one. None outside any project."""
    env = os.environ.get(CONFIG_PATH_ENV, "").strip()
    if env:
        project = project_from_config_dir([p for p in env.split(os.pathsep) if p], CONFIG_PATH_ENV)
        return project if project.config_dirs else None
    return find_project()


def activate(project: Project | None) -> None:
    """Make the project visible to this process and every process it starts (local ranks, Slurm jobs):
    its code folders first on sys.path and PYTHONPATH, its config folders in NORMIA_CONFIG_PATH."""
    if project is None:
        return
    if project.config_dirs:
        os.environ[CONFIG_PATH_ENV] = os.pathsep.join(map(str, project.config_dirs))
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for folder in reversed(project.import_paths):
        text = str(folder)
        if text not in sys.path:
            sys.path.insert(0, text)
        if text not in current:
            current.insert(0, text)
    if current:
        os.environ["PYTHONPATH"] = os.pathsep.join(current)
    importlib.invalidate_caches()
