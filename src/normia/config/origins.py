"""Which layer each chosen config option came from (the project's folders or normia's tree), for `--cfg` and for
errors: a project file that shadows a normia option of the same name is named in the error it causes."""

from __future__ import annotations

from omegaconf import DictConfig

from normia.config.paths import option_sources


def chosen_options(cfg_with_hydra: DictConfig) -> dict[str, str]:
    """group -> option of a config composed with return_hydra_config=True (Hydra's own groups left out)."""
    choices = cfg_with_hydra.hydra.runtime.choices
    return {str(g): str(o) for g, o in choices.items() if o is not None and not str(g).startswith("hydra")}


def origin_lines(choices: dict[str, str]) -> list[str]:
    """One comment line per chosen option: `# model=my_net: project /p/configs/model/my_net.yaml`, with
    `(shadows normia's)` when a project file hides normia's option of the same name."""
    lines = []
    for group, option in sorted(choices.items()):
        sources = option_sources(group, option)
        if not sources:
            continue
        first = sources[0]
        shadow = " (shadows normia's)" if first.label == "project" and len(sources) > 1 else ""
        lines.append(f"# {group}={option}: {first.label} {first.folder / group / (option + '.yaml')}{shadow}")
    return lines


def shadowing_note(choices: dict[str, str], message: str) -> str:
    """'' or '; <file> (project) shadows normia's <group>=<option>' for a shadowed group the message is about."""
    for group, option in choices.items():
        sources = option_sources(group, option)
        if len(sources) < 2 or sources[0].label != "project":
            continue
        if f"{group}." in message or f"'{group}'" in message or f"{group} " in message:
            path = sources[0].folder / group / f"{option}.yaml"
            return f" ({path} in your project shadows normia's {group}={option}: make its keys fit, or rename it)"
    return ""
