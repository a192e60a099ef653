"""Settings that the libraries below would reinterpret or fail on only after the run has started, checked on the
machine that runs it (issue 25 B): a precision Lightning silently replaces, and torch.compile without the compiler
its code generator calls.

Lightning turns `precision=16-mixed` on a CPU into bf16-mixed with a warning nobody reads, while normia records
16-mixed in MLflow: the record then lies about what ran. Inductor (torch.compile) writes C++ for the CPU and calls
$CXX or g++; Triton (its GPU code) builds a small C launcher with $CC or cc/gcc/clang. Without them the first step
ends in an InvalidCxxCompiler (or a CalledProcessError) traceback after data and model were loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from omegaconf import DictConfig

from normia.errors import UserError

# precision -> (why it cannot run on a CPU, what to set instead)
_NOT_ON_CPU = {
    "16-mixed": (
        "fp16 autocast does not exist on the CPU and Lightning would train in bf16-mixed instead while the run "
        "records 16-mixed",
        "trainer.precision=bf16-mixed (what would have run) or 32-true",
    ),
    "transformer-engine": ("Transformer Engine runs on NVIDIA GPUs only", "trainer.precision=bf16-mixed"),
}


def runs_on_cpu(accelerator: str) -> bool:
    """Whether Lightning will put this run on the CPU: accelerator=cpu, or auto on a machine without a GPU."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    return not torch.cuda.is_available()


def check_precision_on_cpu(precision: str) -> None:
    """Raise UserError when `precision` would not run as written on a CPU."""
    if precision in _NOT_ON_CPU:
        why, fix = _NOT_ON_CPU[precision]
        raise UserError(f"trainer.precision={precision} on the CPU: {why}; set {fix}")


def _works(compiler: str) -> bool:
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def missing_compiler(on_cpu: bool) -> str | None:
    """The compiler torch.compile will call here, when it is missing or does not run; None when it is fine."""
    if on_cpu:
        cxx = os.environ.get("CXX") or "g++"  # what Inductor tries (torch._inductor.config.cpp.cxx)
        return None if _works(cxx) else f"the C++ compiler {cxx} (from $CXX, else g++)"
    if os.environ.get("CC"):
        return None if _works(os.environ["CC"]) else f"the C compiler {os.environ['CC']} ($CC)"
    if any(shutil.which(c) for c in ("cc", "gcc", "clang")):  # Triton's own search for its launcher
        return None
    return "a C compiler (cc, gcc or clang, or $CC) for Triton's kernels"


def check_compile_here(on_cpu: bool) -> None:
    """Raise UserError when compile=true cannot compile on this machine."""
    missing = missing_compiler(on_cpu)
    if missing is not None:
        raise UserError(
            f"compile=true needs {missing}, which is not found or does not run here; install it "
            "(e.g. apt install g++, or module load gcc on a cluster) or set compile=false"
        )


def check_settings_here(cfg: DictConfig) -> None:
    """Every check above for the job `cfg`, run before its model and data are built."""
    on_cpu = runs_on_cpu(str(cfg.trainer.accelerator))
    if on_cpu:
        check_precision_on_cpu(str(cfg.trainer.precision))
    else:
        from normia.config.overrides import explicit_keys

        # FSDP/DDP on local GPUs: bf16-mixed unless asked otherwise (the summary and MLflow record the precision)
        default_gpu_precision(cfg, on_gpu=True, explicit=explicit_keys(list(cfg.get("overrides") or [])))
    if cfg.get("compile"):
        check_compile_here(on_cpu)


# The trainer presets for several processes (trainer=ddp, trainer=fsdp) build on the CPU preset, whose precision is
# 32-true; on GPUs that meant fp32 for a ~1B model whose experiment chose bf16 through trainer=gpu (issue 25 D).
MULTI_PROCESS_STRATEGIES = ("fsdp", "ddp")


def default_gpu_precision(cfg: DictConfig, on_gpu: bool, explicit: set[str]) -> str | None:
    """FSDP and DDP on GPUs train in bf16-mixed unless trainer.precision was given on the command line: the CPU
    preset's 32-true they inherit is not a choice anyone made for a GPU. Returns the note that says so (printed by
    the dry run, the submission and a local run), None when nothing changed."""
    if not on_gpu or "trainer.precision" in explicit:
        return None
    strategy = str(cfg.trainer.get("strategy"))
    if strategy in MULTI_PROCESS_STRATEGIES and str(cfg.trainer.get("precision")) == "32-true":
        cfg.trainer.precision = "bf16-mixed"
        return (
            f"note: precision bf16-mixed, not the experiment's 32-true: trainer={strategy} on GPUs defaults to "
            "bf16-mixed (trainer.precision=32-true keeps fp32)"
        )
    return None
