"""A small hand-written project of a researcher's own (pyproject naming normia, configs/, src/my_study/), for the
project tests: its model is its own code, its data normia's digits, so a run takes seconds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "my-study"
version = "0.3.0"
dependencies = ["normia>=0.1"]
"""

MODEL = '''\
"""The project's own model: the loss(batch) -> (loss, metrics) protocol normia trains."""

import torch
from torch import nn


class MyNet(nn.Module):
    def __init__(self, in_features: int = 64, width: int = 32, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch):
        inputs, targets = batch
        logits = self(inputs)
        loss = nn.functional.cross_entropy(logits, targets)
        return loss, {"acc": (logits.argmax(-1) == targets).float().mean()}
'''

FILES = {
    "pyproject.toml": PYPROJECT,
    "src/my_study/__init__.py": '"""my_study: a researcher\'s own code."""\n',
    "src/my_study/models.py": MODEL,
    "configs/model/my_net.yaml": "_target_: my_study.models.MyNet\nin_features: 64\nwidth: 32\nnum_classes: 10\n",
    "configs/experiment/my_study.yaml": textwrap.dedent(
        """\
        # @package _global_
        defaults:
          - override /model: my_net
          - override /data: digits
        name: my_study
        monitor: val/acc
        monitor_mode: max
        trainer:
          max_epochs: 2
          log_every_n_steps: 5
        """
    ),
}


def write_project(root: Path, files: dict[str, str] | None = None) -> Path:
    """Write the tiny project (plus or minus `files`: a value of None deletes that file) under root."""
    for rel, text in {**FILES, **(files or {})}.items():
        path = root / rel
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A project folder: pyproject.toml (my-study 0.3.0, depends on normia), configs/{experiment,model}, src/my_study."""
    return write_project(tmp_path / "my-study")


@pytest.fixture
def project_writer():
    """write_project(root, files) for tests that need a variant of the tiny project."""
    return write_project
