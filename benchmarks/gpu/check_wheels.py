"""Is the set of wheels in .whl/ complete for `normia train` on the GPU machine? (benchmarks/gpu/fetch_wheels.sh)

The GPU machine (device kind nvidia-h200: Python 3.12, torch 2.11, no package index) has the packages in
GPU_MACHINE below (its image's list as read on 2026-11-17, /work/.library/device/KINDS.md). Two checks:

1. closure: every Requires-Dist of every wheel in .whl/ (markers evaluated for CPython 3.12 on x86-64 Linux, no
   extras) is either on the GPU machine or among the wheels; one version of each wheel.
2. --run: `normia train` (tiny, 2 steps, logger=none) in this process with every import refused whose package is
   neither on the GPU machine, nor a shipped wheel, nor normia or the standard library: what the GPU machine would
   miss shows as ModuleNotFoundError here.

    python benchmarks/gpu/check_wheels.py .whl [--run]
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata as md
import re
import sys
import zipfile
from pathlib import Path

GPU_MACHINE = """absl-py, accelerate, aiofiles, aiohappyeyeballs, aiohttp, aiosignal, annotated-doc, anyio, attrs, botorch, build, certifi, charset-normalizer, chex, click, cloudpickle, cmake, colorama, contourpy, coverage, cuda-bindings, cuda-core, cuda-pathfinder, cuda-toolkit, cupy-cuda13x, cycler, cython, diffrax, e3nn, einops, equinox, etils, execnet, filelock, flatbuffers, flax, fonttools, formulaic, frozenlist, fsspec, gpytorch, grpcio, h11, h5py, hf-xet, httpcore, httpx, huggingface-hub, humanize, hypothesis, idna, imageio, iniconfig, interface-meta, jax, jax-cuda13-pjrt, jax-cuda13-plugin, jaxlib, jaxtyping, jinja2, joblib, kiwisolver, lazy-loader, lightning, lightning-utilities, linear-operator, lineax, llvmlite, lxml, markdown, markdown-it-py, markupsafe, matplotlib, mdurl, meson, ml-dtypes, mpi4py, mpmath, msgpack, multidict, multipledispatch, mypy-extensions, nanobind, narwhals, networkx, ninja, numba, numba-cuda, numpy, numpyro, nvidia-cublas, nvidia-cuda-cupti, nvidia-cuda-nvrtc, nvidia-cuda-runtime, nvidia-cudnn-cu13, nvidia-cufft, nvidia-cufile, nvidia-curand, nvidia-cusolver, nvidia-cusparse, nvidia-cusparselt-cu13, nvidia-ml-py, nvidia-nccl-cu13, nvidia-nvjitlink, nvidia-nvshmem-cu13, nvidia-nvtx, onnx, onnx-ir, onnxruntime, onnxscript, opencv-python-headless, optax, opt-einsum, opt-einsum-fx, optimistix, orbax-checkpoint, packaging, pandas, pathspec, patsy, peft, pillow, pip, pluggy, portalocker, prometheus-client, propcache, protobuf, psutil, pyarrow, pybind11, py-cpuinfo, pygments, pyparsing, pyproject-hooks, pyre-extensions, pytest, pytest-benchmark, pytest-cov, pytest-mock, pytest-timeout, pytest-xdist, python-dateutil, pytorch-lightning, pyyaml, regex, requests, rich, sacrebleu, safetensors, scikit-build-core, scikit-image, scikit-learn, scipy, seaborn, sentencepiece, sentence-transformers, setuptools, shellingham, simplejson, six, sortedcontainers, statsmodels, sympy, tabulate, tensorboard, tensorboard-data-server, tensorstore, threadpoolctl, tifffile, tiktoken, timm, tokenizers, toolz, torch, torchaudio, torchdiffeq, torch-geometric, torchmetrics, torchvision, tqdm, transformers, treescope, triton, typer, typing-extensions, typing-inspect, urllib3, uvloop, wadler-lindig, werkzeug, wheel, wrapt, xarray, xxhash, yarl, zipp"""


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_machine() -> set[str]:
    return {canon(n) for n in GPU_MACHINE.replace("\n", " ").split(", ") if n.strip()}


def wheels(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for whl in sorted(folder.glob("*.whl")):
        found.setdefault(canon(whl.name.split("-")[0]), []).append(whl)
    return found


def requirements(whl: Path) -> list[str]:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "implementation_name": "cpython", "extra": ""}  # fmt: skip
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    out = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate(env):
                out.append(canon(req.name))
    return out


def closure(folder: Path) -> list[str]:
    """Problems with the wheel set (empty: complete)."""
    have = wheels(folder)
    problems = [
        f"{n}: {len(ps)} versions ({', '.join(p.name for p in ps)}): keep one"
        for n, ps in have.items()
        if len(ps) > 1
    ]
    there = gpu_machine()
    for paths in have.values():
        for need in requirements(paths[0]):
            if need not in there and need not in have:
                problems.append(f"{paths[0].name} needs {need}: neither on the GPU machine nor in {folder}/")
    return problems


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuse a top-level import, by normia or a shipped wheel's code, of a module whose distribution the GPU machine
    would not have. (Imports by packages the GPU machine has are left alone: there they come with their own deps,
    in versions that may differ from this machine's.)"""

    def __init__(self, allowed: set[str], watched: tuple[str, ...]) -> None:
        self.dists = md.packages_distributions()
        self.allowed = allowed
        self.watched = watched  # top-level names whose imports are checked: normia and the shipped packages
        self.refused: list[str] = []

    def _importer(self) -> str:
        frame = sys._getframe(2)
        while frame is not None and (
            frame.f_code.co_filename.startswith("<frozen") or "importlib" in frame.f_code.co_filename
        ):
            frame = frame.f_back
        return str(frame.f_globals.get("__name__", "")) if frame is not None else ""

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        top = name.partition(".")[0]
        if path is not None or top in sys.stdlib_module_names or top.startswith("_") or top in self.watched:
            return None
        dists = {canon(d) for d in self.dists.get(top, [])}
        if not dists or dists & self.allowed:
            return None
        importer = self._importer()
        if importer.partition(".")[0] not in self.watched:
            return None
        self.refused.append(f"{name} (by {importer})")
        raise ModuleNotFoundError(
            f"No module named '{name}' on the GPU machine (package {', '.join(sorted(dists))})"
        )


def _tops() -> dict[str, list[str]]:
    """distribution -> its top-level module names, for the installed ones."""
    out: dict[str, list[str]] = {}
    for top, dists in md.packages_distributions().items():
        for d in dists:
            out.setdefault(canon(d), []).append(top)
    return out


def run_normia(folder: Path) -> int:
    shipped = set(wheels(folder))
    allowed = gpu_machine() | shipped | {"normia"}
    watched = ("normia", *(top for d, tops in _tops().items() if d in shipped for top in tops))
    sys.meta_path.insert(0, _Refuse(allowed, watched))
    for mod in [m for m in sys.modules if m.partition(".")[0] not in sys.stdlib_module_names]:
        del sys.modules[mod]  # nothing imported before the guard may slip through
    import tempfile

    from normia.cli import main

    out = tempfile.mkdtemp(prefix="normia-wheels-")
    return main(["train", "experiment=gpu_llama_125m", "model=llama_tiny", "data.vocab_size=256",
                 "data.input_shape=[64]", "model.max_seq_len=64", "trainer=cpu", "trainer.max_steps=2",
                 "energy=off", f"paths.output_dir={out}/run"])  # fmt: skip


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else ".whl")
    problems = closure(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.whl"))
    print(f"{len(list(folder.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {folder}/")
    for p in problems:
        print("MISSING", p)
    if problems:
        return 1
    print("closure: complete (every requirement is on the GPU machine or shipped)")
    if "--run" in argv:
        code = run_normia(folder)
        print(f"normia train with only the GPU machine's packages and the wheels: exit {code}")
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
