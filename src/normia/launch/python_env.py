"""Which Python the ranks run and whether its torch can use a GPU, known before submission.

Why: a venv made on a login node without a GPU gets the CPU build of torch (the README's set-up installs it). A GPU
job submitted from it holds GPUs in the queue and can only fail on the node ("Torch not compiled with CUDA
enabled"). The job runs this interpreter (by absolute path) unless launcher.python names another, so its torch
build can be read here, from torch/version.py, without importing torch (1.5-2 s).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from normia.errors import UserError
from normia.launch.spec import SlurmLauncherCfg


@dataclass
class TorchBuild:
    version: str
    cuda: str | None = None
    hip: str | None = None

    @property
    def has_gpu_support(self) -> bool:
        return bool(self.cuda or self.hip)

    def describe(self) -> str:
        if self.cuda:
            return f"torch {self.version} (CUDA {self.cuda})"
        if self.hip:
            return f"torch {self.version} (ROCm {self.hip})"
        return f"torch {self.version} (CPU-only build)"


def local_torch_build() -> TorchBuild | None:
    """The torch build this interpreter imports; None when torch is not installed."""
    if "torch" in sys.modules:
        import torch

        return TorchBuild(str(torch.__version__), torch.version.cuda, getattr(torch.version, "hip", None))
    spec = importlib.util.find_spec("torch")  # a top-level package: found, not imported
    if spec is None or not spec.origin:
        return None
    return read_version_file(Path(spec.origin).with_name("version.py"))


def read_version_file(path: Path) -> TorchBuild | None:
    """torch/version.py's __version__, cuda and hip (plain or annotated assignments of literals)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    values: dict[str, object] = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    if "__version__" not in values:
        return None
    cuda, hip = values.get("cuda"), values.get("hip")
    return TorchBuild(str(values["__version__"]), cuda and str(cuda), hip and str(hip))  # type: ignore[arg-type]


def runs_this_python(spec: SlurmLauncherCfg) -> bool:
    """True when the ranks run this interpreter: launcher.python unset, or naming this same file. A bare name
    (launcher.python=python) after launcher.setup lines is looked up on the node, after the setup: another Python."""
    if spec.python is None:
        return True
    command = spec.python.split()[0] if spec.python.split() else spec.python
    if os.sep not in command and spec.setup:
        return False
    found = shutil.which(command) if os.sep not in command else command
    if not found:
        return False
    # not realpath: every venv's bin/python links to the same base interpreter, and the venv is what differs
    return os.path.normpath(os.path.abspath(found)) == os.path.normpath(os.path.abspath(sys.executable))


def describe_python(spec: SlurmLauncherCfg) -> str:
    """One line for the dry run: which Python the ranks start and what torch it has, when that is known here."""
    if not runs_this_python(spec):
        return f"python: {spec.python} (launcher.python: another Python than this one, its torch not checked here)"
    build = local_torch_build()
    return f"python: {sys.executable}, {build.describe() if build else 'no torch installed'}"


def check_gpu_python(spec: SlurmLauncherCfg) -> None:
    """Refuse a GPU job whose ranks would run a torch that cannot use a GPU."""
    if spec.gpus_per_node == 0 or not runs_this_python(spec):
        return
    build = local_torch_build()
    if build is not None and build.has_gpu_support:
        return
    what = build.describe() if build else "no torch"
    raise UserError(
        f"launcher.gpus_per_node={spec.gpus_per_node} but the ranks would run {sys.executable}, which has {what}: "
        "every rank would fail on the node; install a CUDA build of torch in this environment (on Austral: "
        "module load aidl/pytorch/..., then a venv with --system-site-packages), or set launcher.python to the "
        "Python your launcher.setup lines bring (e.g. launcher.python=python)"
    )
