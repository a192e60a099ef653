"""Render a project template (src/normia/project/templates/) and write it into a folder all at once.

A template is the files of `templates/common/` plus those of `templates/<name>/`, every one ending in `.tmpl` (so
that neither ruff nor pytest treats the half-made Python files as code). Rendering replaces `{{var}}` in file
contents and in paths, strips `.tmpl`, and turns a leading `dot-` into `.` (wheels drop hidden files). A file whose
name starts with `_` is a part, not a file: `_about.md.tmpl` fills `{{about}}` in the README.

Why stage then move: a failed write (disk full, a permission) must leave nothing behind, and `normia init .` in an
empty folder must keep that folder (the user's shell is in it), so the files are written into a hidden sibling
folder first and moved into place only once all of them exist.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from normia.errors import UserError

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
SUFFIX = ".tmpl"


@dataclass(frozen=True)
class Template:
    """One study shape: its summary (help, README, pyproject) and a writer of the sample data that it trains on as
    generated (None when the data is a template file)."""

    name: str
    summary: str
    sample_data: Callable[[Path], None] | None = field(default=None, compare=False)


def _templates() -> dict[str, Template]:
    from normia.project import sample_data

    shapes = [
        Template("table", "Classifying the rows of a table (CSV)"),
        Template("images", "Classifying images sorted in a folder per class", sample_data.write_stripes),
        Template("forecast", "Forecasting a dated series (CSV)", sample_data.write_monthly_series),
        Template("lm", "A byte-level language model on text", sample_data.write_text),
    ]
    return {t.name: t for t in shapes}


TEMPLATES = _templates()
DEFAULT_TEMPLATE = "table"


def template_root() -> Path:
    """The folder of the shipped templates (a real folder in a checkout and in an installed wheel)."""
    return Path(str(resources.files("normia.project") / "templates"))


def render(text: str, variables: dict[str, str], where: str) -> str:
    """text with each {{var}} replaced; an unknown var is a bug in the template, named with its file."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables:
            raise KeyError(f"template {where} uses {{{{{key}}}}}, which has no value")
        return variables[key]

    return PLACEHOLDER.sub(value, text)


def output_path(relative: str, variables: dict[str, str]) -> str:
    """A template path as it is written: variables filled, `.tmpl` dropped, a leading `dot-` made a `.`."""
    parts = render(relative, variables, relative).removesuffix(SUFFIX).split("/")
    parts[-1] = "." + parts[-1].removeprefix("dot-") if parts[-1].startswith("dot-") else parts[-1]
    return "/".join(parts)


def _template_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{SUFFIX}") if p.is_file())


def render_project(template: Template, variables: dict[str, str]) -> dict[str, str]:
    """Every file of the project as {relative path: text}: common files, then the template's (which win)."""
    root = template_root()
    variables = dict(variables)
    parts: dict[str, str] = {}
    files: dict[str, str] = {}
    for folder in (root / "common", root / template.name):
        for path in _template_files(folder):
            relative = path.relative_to(folder).as_posix()
            text = path.read_text(encoding="utf-8")
            if relative.startswith("_"):
                parts[relative.removeprefix("_").removesuffix(SUFFIX).split(".")[0]] = text
            else:
                files[relative] = text
    for key, text in parts.items():
        variables[key] = render(text, variables, f"{template.name}/_{key}").strip()
    return {output_path(rel, variables): render(text, variables, rel) for rel, text in files.items()}


def write_project(target: Path, files: dict[str, str], sample_data: Callable[[Path], None] | None) -> None:
    """Write files (and the sample data) into target, a new or empty folder, all or nothing.

    Raises UserError when the folder cannot be written; nothing is left behind then."""
    parent = target.parent
    made = _first_missing(parent)  # a folder this call creates, removed again on failure
    staging = parent / f".{target.name}.normia-init-{uuid.uuid4().hex[:8]}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if sample_data is not None:
            sample_data(staging)
        _move_into_place(staging, target)
    except BaseException as err:
        shutil.rmtree(made or staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise UserError(
                f"cannot write the project into {target}: {err}; give a folder you can write to"
            ) from None
        raise


def _first_missing(folder: Path) -> Path | None:
    """The outermost missing folder on the way to `folder` (None when it exists)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _move_into_place(staging: Path, target: Path) -> None:
    """A missing target: one rename. An existing empty one: its entries move in, the folder itself stays."""
    if not target.exists():
        staging.rename(target)
        return
    for entry in sorted(staging.iterdir()):
        os.rename(entry, target / entry.name)
    staging.rmdir()
