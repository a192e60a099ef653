"""The schema every composed `normia train` config must satisfy.

Hydra's YAML alone accepts `trainer.max_steps=abc` or a typo'd key inside an experiment file; merging the composed
config into these dataclasses rejects both with the full key path. Groups whose content depends on the chosen class
(model, data, callbacks, launcher) are free-form here and checked against the target's signature instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "linear", "constant")
STRATEGIES = ("auto", "ddp", "fsdp")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = (
    "32-true",
    "32",
    "bf16-mixed",
    "bf16-true",
    "16-mixed",
    "16-true",
    "64-true",
    "transformer-engine",
    # normia's own: bf16-mixed plus torchao's float8 linear layers (training/float8.py); needs compute capability
    # 8.9+ (H100/H200/L40S), refused before the run elsewhere (training/preflight.py).
    "float8",
)
KERNEL_BACKENDS = ("auto", "triton", "torch")
LOGGERS = ("mlflow", "none")
ENERGY_MODES = ("auto", "off")
PROFILERS = ("simple", "advanced", "pytorch")


@dataclass
class OptimCfg:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1


CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "every_n_steps": None,
    "every_minutes": 30.0,
    "keep_last": 2,
    "async": True,
}


@dataclass
class TrainerCfg:
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = -1
    max_epochs: int | None = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int = 10
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    deterministic: bool = False
    fast_dev_run: Any = False
    overfit_batches: Any = 0.0
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    profiler: str | None = None
    enable_progress_bar: bool = True
    checkpoint_every_n_steps: int | None = (
        None  # deprecated (runs of earlier versions): checkpoint.every_n_steps
    )
    # Hang watchdog (training/watchdog.py): no progress of the training loop for this long ends the job (exit 124)
    # naming the rank(s) the others waited for. After the first two steps: max(hang_timeout_s, 20 x the median
    # step); before them and while a checkpoint is written: hang_first_timeout_s. null: no watchdog.
    hang_timeout_s: float | None = 300.0
    hang_first_timeout_s: float = 1800.0
    # A loss that is nan/inf: "stop" fails the run at that step (exit 3, MLflow FAILED); "skip" drops that
    # optimizer step on every rank and counts it (train/skipped_steps).
    on_nonfinite_loss: str = "stop"


@dataclass
class LoggerCfg:
    name: str = "mlflow"
    tracking_uri: str | None = None
    experiment_name: str = "default"
    run_name: str | None = None
    flush_every_s: float = 5.0
    system_metrics: bool = True


@dataclass
class EnergyCfg:
    """Energy and carbon of the run (normia.energy): see configs/energy/auto.yaml."""

    mode: str = "auto"
    pue: float = 1.0
    carbon_intensity_g_per_kwh: float = 21.7
    estimate: bool = False
    cpu_tdp_w: float | None = None


@dataclass
class PathsCfg:
    output_root: str = "outputs"
    output_dir: str | None = None
    data_dir: str = "data"


@dataclass
class TrainCfg:
    model: Any = None
    data: Any = None
    optim: OptimCfg = field(default_factory=OptimCfg)
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    logger: LoggerCfg = field(default_factory=LoggerCfg)
    energy: EnergyCfg = field(default_factory=EnergyCfg)
    # Not a dataclass: its key `async` is a Python keyword. Checked by config/checkpoint_settings.py.
    checkpoint: Any = field(default_factory=lambda: dict(CHECKPOINT_DEFAULTS))
    callbacks: Any = field(default_factory=dict)
    paths: PathsCfg = field(default_factory=PathsCfg)
    launcher: Any = field(default_factory=lambda: {"name": "local"})
    name: str = "default"
    seed: int = 42
    resume: Any = False
    # Keys a resumed run may change besides max_steps/max_epochs (train/resume_check.py); others are refused.
    resume_allow_changes: list[str] = field(default_factory=list)
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    compile: bool = False
    kernels: str = "auto"
    tags: Any = field(default_factory=dict)
    # Code a config may name besides normia's own and a short list of torch/Lightning classes (config/trust.py):
    # prefixes such as "my_study." or exact class paths. Read from your own configs and overrides only, never from
    # a recorded config (normia reproduce / eval ignore it there).
    trusted_targets: list[str] = field(default_factory=list)
    # Filled in by normia, not by the user: the command-line overrides that made this job.
    overrides: list[str] = field(default_factory=list)


# Fields whose value must be one of a fixed set: (dotted key, allowed values).
CHOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("optim.name", OPTIMIZERS),
    ("optim.scheduler", SCHEDULERS),
    ("trainer.strategy", STRATEGIES),
    ("trainer.accelerator", ACCELERATORS),
    ("trainer.precision", PRECISIONS),
    ("logger.name", LOGGERS),
    ("energy.mode", ENERGY_MODES),
    ("kernels", KERNEL_BACKENDS),
    ("monitor_mode", ("min", "max")),
    ("trainer.on_nonfinite_loss", ("stop", "skip")),
)
