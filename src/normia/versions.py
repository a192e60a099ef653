"""The versions normia supports, checked at start-up instead of failing deep inside a run.

pip enforces pyproject.toml's ranges when it installs normia, but not when the ranks run another environment: on
Austral a job's `launcher.setup` may load a cluster module (`aidl/pytorch/2.6.0-cuda12.6` holds torch 2.6) under a
normia installed with `--no-deps` or through PYTHONPATH. The ranges are read from normia's own installed metadata
(pyproject.toml is the one place they are written) and compared with the installed distributions' versions, without
importing any of them (a few ms)."""

from __future__ import annotations

import importlib.metadata as md

from normia.errors import UserError

# The Austral module whose torch is within normia's range (slurm/austral/README.md lists what users' scripts load).
AUSTRAL_TORCH_MODULE = "aidl/pytorch/2.10.0-py3.12-cuda12.6"


def unsupported_versions() -> list[tuple[str, str, str]]:
    """(distribution, installed version, required specifier) for each installed core dependency of normia whose
    version is outside the range normia declares. Empty when normia is not installed as a distribution (a bare
    PYTHONPATH checkout: nothing declared to compare with) or when everything fits."""
    try:
        requirements = md.requires("normia") or []
    except md.PackageNotFoundError:
        return []
    # After the lookup: a checkout run through PYTHONPATH (the GPU script's bare machine) needs no packaging.
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    found = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement, or one for another platform
        try:
            installed = md.version(req.name)
        except md.PackageNotFoundError:
            continue  # missing: its import fails with its own message
        try:
            ok = req.specifier.contains(Version(installed), prereleases=True)
        except InvalidVersion:
            continue
        if not ok:
            found.append((req.name, installed, str(req.specifier)))
    return found


def check_supported_versions() -> None:
    """Refuse to start with a dependency outside normia's tested range.

    Raises:
        UserError: one line naming each such distribution, its version, the range, and how to get a supported one.
    """
    bad = unsupported_versions()
    if not bad:
        return
    listed = "; ".join(f"{name} {installed} (normia needs {spec})" for name, installed, spec in bad)
    fix = "pip install " + " ".join(f"'{name}{spec}'" for name, _, spec in bad)
    if any(name == "torch" for name, _, _ in bad):
        fix += f", or on Austral `module load {AUSTRAL_TORCH_MODULE}` in launcher.setup"
    raise UserError(f"unsupported version: {listed}: {fix} (the tested set is .ci/constraints-py*.txt)")
