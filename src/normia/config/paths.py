"""Where the Hydra config tree lives: inside the installed package (wheel) or the checkout (editable install)."""

from __future__ import annotations

from pathlib import Path


def configs_dir() -> Path:
    """The configs/ tree; `normia/configs` is a symlink in a checkout and a real folder in a wheel."""
    here = Path(__file__).resolve().parent.parent / "configs"
    if (here / "train.yaml").is_file():
        return here
    raise FileNotFoundError(
        f"normia's configs/ tree is missing from {here}: reinstall normia (pip install .)"
    )


def group_options(group: str) -> list[str]:
    """The option names of one config group (e.g. 'experiment' -> ['quickstart', ...])."""
    folder = configs_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def config_groups() -> list[str]:
    return sorted(p.name for p in configs_dir().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
