"""Where a Slurm job's ranks run and what they import: the researcher's project (normia.project), carried to the node.

Why: the CLI finds the project from the folder it runs in (or --config-dir) and makes its code importable in its own
process (normia.project.activate). A job starts elsewhere: sbatch's working folder is wherever sbatch ran (a
subfolder of the project, say), and what the job inherits from the submitting shell depends on sbatch (--export,
SBATCH_EXPORT) and on the job's own setup lines (`module purge`, a module that sets PYTHONPATH). So the job is told
explicitly, three ways that agree:
- `#SBATCH --chdir=<project root>`: the script, its setup lines and every rank start in the project folder, where
  the project's relative paths (`data/...`) point;
- export lines after launcher.setup: the project's code folders first on PYTHONPATH, its config folders in
  NORMIA_CONFIG_PATH, for every rank and every process a rank starts;
- the pickled TrainJob carries the same JobPlace and enters it before training (chdir, sys.path, environment), so
  a rank imports `my_study.models.MyNet` whatever a setup line did to the environment.
Outside a project nothing of this happens: the job runs where sbatch ran, as before.
"""

from __future__ import annotations

import importlib
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from normia.errors import UserError
from normia.project import CONFIG_PATH_ENV, Project, current_project


@dataclass(frozen=True)
class JobPlace:
    """The working folder of every rank, and the project's code and config folders (absolute paths).

    label: the project's name and version (`my-study 0.3.0`), None for a working folder given by
    `launcher.sbatch_args.chdir` outside a project.
    """

    workdir: Path
    label: str | None = None
    import_paths: tuple[Path, ...] = ()
    config_dirs: tuple[Path, ...] = ()
    packages: tuple[str, ...] = ()

    def script_lines(self) -> list[str]:
        """Shell lines for the job script, after launcher.setup (which may have reset PYTHONPATH)."""
        lines = []
        if self.import_paths or self.config_dirs:
            lines.append(f"# the project {self.label}: its code first on PYTHONPATH, its configs for normia")
        if self.import_paths:
            paths = shlex.quote(os.pathsep.join(map(str, self.import_paths)))
            lines.append(f'export PYTHONPATH={paths}"${{PYTHONPATH:+{os.pathsep}$PYTHONPATH}}"')
        if self.config_dirs:
            lines.append(
                f"export {CONFIG_PATH_ENV}={shlex.quote(os.pathsep.join(map(str, self.config_dirs)))}"
            )
        return lines

    def describe(self, how: str = "#SBATCH --chdir") -> list[str]:
        """Lines for the dry run: where each rank starts (and `how` it gets there), and how it finds the project's
        code and configs."""
        origin = f"project {self.label}" if self.label else "launcher.sbatch_args.chdir"
        lines = [f"working folder: {self.workdir} ({origin}; {how})"]
        if self.import_paths:
            packages = ", ".join(self.packages) or "its code"
            lines.append(
                f"project code: {os.pathsep.join(map(str, self.import_paths))} first on PYTHONPATH "
                f"({packages} imported from there, installed or not)"
            )
        if self.config_dirs:
            lines.append(f"project configs: {CONFIG_PATH_ENV}={os.pathsep.join(map(str, self.config_dirs))}")
        return lines

    def enter(self) -> None:
        """In a rank, before anything imports the project's code or reads a relative path: chdir to the working
        folder, the project's code folders first on sys.path and PYTHONPATH, its configs in NORMIA_CONFIG_PATH.
        UserError when the folder is not there on this node (a project on a disk the nodes do not share)."""
        if not self.workdir.is_dir():
            raise UserError(
                f"the job's working folder {self.workdir} does not exist on {socket.gethostname()}: put the project "
                "on a file system the compute nodes share (your home or work space, not a login node's /tmp)"
            )
        os.chdir(self.workdir)
        current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        for folder in reversed(self.import_paths):
            text = str(folder)
            while text in sys.path:
                sys.path.remove(text)
            sys.path.insert(0, text)
            current = [text, *(p for p in current if p != text)]
        if current:
            os.environ["PYTHONPATH"] = os.pathsep.join(current)
        if self.config_dirs:
            os.environ[CONFIG_PATH_ENV] = os.pathsep.join(map(str, self.config_dirs))
        importlib.invalidate_caches()


def _label(project: Project) -> str:
    """`my-study 0.3.0`: the project's name and version (its folder's name when pyproject.toml has none)."""
    name = project.name or (project.root.name if project.root else "config folders")
    return f"{name} {project.version}" if project.version else name


def _one_line(path: Path, what: str) -> None:
    """A folder written into the job script (#SBATCH --chdir, export lines) holds no line break."""
    if any(c in str(path) for c in "\n\r\x00"):
        raise UserError(
            f"{what} {str(path)!r} has a line break in its name, which cannot go into the job script: "
            "rename the folder"
        )


def job_place(chdir: Any = None) -> JobPlace | None:
    """The place of a job submitted from here: the current project's root (or `chdir`, launcher.sbatch_args.chdir,
    when given), its code and config folders. None outside a project without `chdir`: the job runs where sbatch
    runs, as it always did. UserError for a `chdir` that is not a folder, or a folder name that cannot go into the
    job script (a line break)."""
    project = current_project()
    given = chdir not in (None, "")
    if project is None and not given:
        return None
    if given:  # sbatch would read a relative one from the folder it runs in: this one
        workdir = Path(str(chdir)).expanduser().resolve()
        if not workdir.is_dir():
            raise UserError(
                f"launcher.sbatch_args.chdir={chdir}: no such folder ({workdir}); give the folder the job should "
                "start in, or drop it (a project's jobs start in the project's folder)"
            )
    elif project is not None and project.root is not None:
        workdir = project.root
    else:  # config folders outside any project: the job starts in this folder, as sbatch's default, now explicit
        workdir = Path.cwd().resolve()
    place = JobPlace(
        workdir=workdir,
        label=_label(project) if project is not None else None,
        import_paths=tuple(project.import_paths) if project is not None else (),
        config_dirs=tuple(project.config_dirs) if project is not None else (),
        packages=tuple(project.packages) if project is not None else (),
    )
    _one_line(place.workdir, "the job's working folder")
    for path in (*place.import_paths, *place.config_dirs):
        _one_line(path, "the project's folder")
    return place


def pin_paths(cfg: DictConfig, place: JobPlace | None) -> None:
    """Absolute output folder and tracking URI: the job may start in another folder (its working folder, sbatch's)
    and must write where this command says. With a working folder of its own (a project), the other paths that
    name a place for this run's files (output_root, a relative resume checkpoint) are pinned to this folder too."""
    cfg.paths.output_dir = str(Path(cfg.paths.output_dir).resolve())
    logger = cfg.get("logger")
    if logger is not None and logger.get("name") == "mlflow" and not logger.get("tracking_uri"):
        from normia.tracking.uri import resolve_tracking_uri

        uri = resolve_tracking_uri(None)
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
        logger.tracking_uri = uri
    if place is None:
        return
    cfg.paths.output_root = str(Path(str(cfg.paths.output_root)).resolve())
    resume = cfg.get("resume")
    if isinstance(resume, str) and resume.endswith(".ckpt"):
        cfg.resume = str(Path(resume).resolve())
