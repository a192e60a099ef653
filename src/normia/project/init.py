"""`normia init PATH [--name PKG] [--template table|images|forecast|lm]`: start a researcher's own project.

It writes a small project that works as generated: configs/ (one experiment, one model, one data option), src/PKG/
(a model and a data module), tests/ (compose the config, train one batch), a pyproject.toml that depends on normia,
a README with the commands, and the data it trains on. Every input is checked before anything is written, and the
files appear all at once (scaffold.py): a refusal or a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
import shlex
import sys
from pathlib import Path

from normia.errors import UserError, did_you_mean
from normia.project.scaffold import DEFAULT_TEMPLATE, TEMPLATES, render_project, write_project

RESERVED_NAMES = {"normia": "is normia's own package", "tests": "is the project's tests/ folder"}
EXAMPLE_NAME = "my_study"


def _parser() -> argparse.ArgumentParser:
    shapes = "\n".join(f"  {t.name:<9} {t.summary}" for t in TEMPLATES.values())
    parser = argparse.ArgumentParser(
        prog="normia init",
        description="Write a small, working project of your own that uses normia: configs/, src/PKG/ (a model and "
        "a data module), tests/, pyproject.toml, a README and sample data. PATH must be new or empty.",
        epilog=f"templates:\n{shapes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="the project folder to create (new or empty)")
    parser.add_argument(
        "--name",
        metavar="PKG",
        help="the Python package (src/PKG/) and experiment name; default: the folder's name, lowercase, "
        "'-' made '_'",
    )
    parser.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        metavar="TEMPLATE",
        help=f"the study's shape: {', '.join(TEMPLATES)} (default: {DEFAULT_TEMPLATE})",
    )
    return parser


def name_from_folder(folder: Path) -> str:
    """The folder's name as a package name: lowercase, runs of other characters than a-z, 0-9 and '_' made '_'."""
    return re.sub(r"[^0-9a-z_]+", "_", folder.name.lower()).strip("_")


def check_package_name(name: str, given: bool, folder: Path) -> str:
    """name if it can be the project's package; else UserError saying why and what to give instead."""
    origin = (
        f"--name '{name}'"
        if given
        else f"the package name '{name}' (made from the folder name '{folder.name}')"
    )
    fix = f"give another with --name, e.g. --name {EXAMPLE_NAME}"
    if not name.isascii() or not name.isidentifier():
        problem = "is not a Python identifier (ASCII letters, digits and '_', not starting with a digit)"
    elif keyword.iskeyword(name):
        problem = "is a Python keyword"
    elif name in RESERVED_NAMES:
        problem = RESERVED_NAMES[name]
    elif _importable(name):
        problem = f"would hide the existing module '{name}' (the project's src/ comes first on sys.path)"
    else:
        return name
    raise UserError(f"{origin} {problem}: {fix}")


def _importable(name: str) -> bool:
    """A module of that name already exists (stdlib or installed); an empty folder of that name does not count."""
    if name in sys.stdlib_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return True
    return spec is not None and spec.origin not in (None, "namespace")


def check_target(target: Path) -> None:
    """The project folder must be new or empty: init never mixes its files with someone else's. An existing one
    must also be a real folder of this user's that nobody else can write (they could plant code in the project).
    Raises UserError naming the problem."""
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file: give a new or empty folder as PATH")
    from normia.private_paths import check_private_folder

    check_private_folder(target, "give a new folder as PATH")
    if target.is_dir():
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UserError(
                f"{target} is not empty ({shown}): normia init writes only into a new or empty folder; "
                "give another PATH"
            )


def check_template(name: str) -> None:
    if name not in TEMPLATES:
        raise UserError(f"unknown --template '{name}'{did_you_mean(name, TEMPLATES)}")


def project_variables(pkg: str, template: str) -> dict[str, str]:
    """What the templates' {{var}}s become."""
    from normia import __version__

    release = re.match(r"\d+(\.\d+)*", __version__)
    shape = TEMPLATES[template]
    return {
        "pkg": pkg,
        "dist": pkg.replace("_", "-"),
        "experiment": pkg,
        "data_option": f"{pkg}_data",
        "summary": shape.summary,
        "template": template,
        "normia_version": release.group(0) if release else "0",
    }


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    target = Path(args.path).expanduser().resolve()
    check_template(args.template)
    pkg = args.name if args.name is not None else name_from_folder(target)
    check_package_name(pkg, args.name is not None, target)
    check_target(target)
    variables = project_variables(pkg, args.template)
    files = render_project(TEMPLATES[args.template], variables)
    write_project(target, files, TEMPLATES[args.template].sample_data)
    from normia.project.git_init import init_repository

    _report(target, args.path, variables, init_repository(target))
    return 0


def _report(target: Path, typed: str, variables: dict[str, str], git_line: str) -> None:
    pkg, experiment = variables["pkg"], variables["experiment"]
    print(
        f"wrote the '{variables['template']}' template into {target} (package {pkg}, experiment {experiment})\n"
        f"  {git_line}\n"
        f"  configs/experiment/{experiment}.yaml  the experiment: change the keys marked CHANGE for your data\n"
        f"  src/{pkg}/model.py, data.py   the network and the data module\n"
        f"  tests/, README.md\n"
        "next:\n"
        f"  cd {shlex.quote(typed)} && pip install -e .\n"
        f"  normia train experiment={experiment}\n"
        "  pytest"
    )
