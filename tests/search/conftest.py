"""Fixtures of the search tests: a config folder for the tests' own search spaces."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def space_dir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder beside the work folder (NORMIA_CONFIG_PATH) for the test's own search spaces."""
    folder = workdir.parent / f"{workdir.name}-configs"
    (folder / "search").mkdir(parents=True)
    monkeypatch.setenv("NORMIA_CONFIG_PATH", str(folder))
    return folder
