"""Lightning's devices/num_nodes follow from the launcher, so the 'SLURM_NTASKS_PER_NODE must equal devices'
mismatch cannot happen: one task per GPU (or launcher.tasks_per_node on CPU), one Lightning process per task."""

from __future__ import annotations

from omegaconf import DictConfig

from normia.config.overrides import explicit_keys
from normia.errors import UserError
from normia.launch.spec import SlurmLauncherCfg
from normia.training.settings_check import default_gpu_precision

_FROM_LAUNCHER = {
    "devices": "tasks per node",
    "num_nodes": "nodes",
}


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


def fit_trainer_to_spec(cfg: DictConfig, spec: SlurmLauncherCfg) -> str | None:
    """fit_trainer from a Slurm request; returns its note."""
    return fit_trainer(cfg, spec.nodes, spec.tasks, spec.gpus_per_node)
