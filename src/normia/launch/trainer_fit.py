"""Lightning's devices/num_nodes follow from the launcher, so the 'SLURM_NTASKS_PER_NODE must equal devices'
mismatch cannot happen: one task per GPU (or launcher.tasks_per_node on CPU), one Lightning process per task."""

from __future__ import annotations

from omegaconf import DictConfig

from normia.errors import UserError
from normia.launch.spec import SlurmLauncherCfg

_FROM_LAUNCHER = {
    "devices": "tasks per node",
    "num_nodes": "nodes",
}


def explicit_keys(overrides: list[str]) -> set[str]:
    """Dotted keys the user set on the command line (`trainer.devices=3`, `+x=1`, `++x=1`)."""
    keys = set()
    for override in overrides:
        key, eq, _ = override.lstrip("+~").partition("=")
        if eq:
            keys.add(key.strip())
    return keys


def fit_trainer(cfg: DictConfig, nodes: int, tasks_per_node: int, gpus_per_node: int) -> str | None:
    """Set cfg.trainer.devices/num_nodes from the allocation; refuse an explicit setting that disagrees. Returns a
    note to print once the request is accepted (a precision normia chose), or None."""
    wanted = {"devices": tasks_per_node, "num_nodes": nodes}
    explicit = explicit_keys(list(cfg.get("overrides") or []))
    for key, value in wanted.items():
        current = cfg.trainer.get(key)
        if f"trainer.{key}" in explicit and str(current) != str(value):
            how = (
                ("launcher.gpus_per_node (one task per GPU)" if gpus_per_node else "launcher.tasks_per_node")
                if key == "devices"
                else "launcher.nodes"
            )
            raise UserError(
                f"trainer.{key}={current} but the Slurm job has {value} {_FROM_LAUNCHER[key]}; drop trainer.{key} "
                f"(normia sets it from the launcher) or change {how}"
            )
        cfg.trainer[key] = value
    return _fit_accelerator(cfg, gpus_per_node, explicit)


def _fit_accelerator(cfg: DictConfig, gpus_per_node: int, explicit: set[str]) -> str | None:
    """GPUs asked for must be used: a CPU trainer on GPU nodes (an experiment's `trainer: cpu` preset plus
    launcher.gpus_per_node=2) would hold them idle, so it is refused rather than silently switched. `auto` is made
    concrete, so the dry run shows what each rank will run on."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if gpus_per_node > 0 and accelerator == "cpu":
        chosen = "trainer.accelerator" in explicit or any(
            o.lstrip("+~").startswith("trainer=") for o in cfg.get("overrides") or []
        )
        where = "on the command line" if chosen else "from the experiment's trainer preset"
        raise UserError(
            f"launcher.gpus_per_node={gpus_per_node} but trainer.accelerator=cpu ({where}): the job would hold "
            f"{gpus_per_node} GPU(s) per node and train on the CPU; add trainer=gpu (or trainer=ddp), "
            "or set launcher.gpus_per_node=0 for a CPU job"
        )
    if gpus_per_node == 0 and accelerator in ("gpu", "cuda"):
        raise UserError(
            f"trainer.accelerator={accelerator} but launcher.gpus_per_node=0; ask for GPUs with launcher.gpus_per_node=N"
        )
    if accelerator == "auto":
        # a CPU job must not try CUDA because the login node had a GPU; a GPU job must not fall back to the CPU
        cfg.trainer.accelerator = "gpu" if gpus_per_node > 0 else "cpu"
    return default_gpu_precision(cfg, on_gpu=gpus_per_node > 0, explicit=explicit)


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


def fit_trainer_to_spec(cfg: DictConfig, spec: SlurmLauncherCfg) -> str | None:
    """fit_trainer from a Slurm request; returns its note."""
    return fit_trainer(cfg, spec.nodes, spec.tasks, spec.gpus_per_node)
