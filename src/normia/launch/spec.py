"""The launcher settings (configs/launcher/slurm.yaml, austral.yaml, srun.yaml), typed and checked.

The train schema leaves `launcher` free-form because each launcher has its own keys; this is where a Slurm
launcher's keys are checked, so `launcher.gpus_per_nod=4` fails with a did-you-mean before anything is queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from normia.config.masking import mask_text
from normia.errors import UserError, did_you_mean
from normia.launch.timelimit import time_limit_seconds

SIGNALS = ("USR1", "USR2")
GPU_FLAGS = ("gpus_per_node", "gpus")


@dataclass
class PartitionLimits:
    """What a preset knows about a partition; the live cluster (sinfo) is asked too when it can be reached."""

    max_gpus_per_node: int | None = None
    max_time: str | None = None
    cpus_per_task: int | None = None  # the preset's default for jobs on this partition
    # The nodes' GPU model (a100, h200, mi210: training/float8.py GPU_MODELS); None: unknown. float8 is refused
    # before submission where it has no float8 GEMMs.
    gpu: str | None = None
    note: str = ""
    # GPUs split with MIG: a process sees one slice and NCCL does not span slices, so one rank per job only.
    mig: bool = False
    # all-reduce bus bandwidth (GB/s) under which the pre-flight check fails a multi-GPU job here (NCCL only)
    min_busbw_gbps: float | None = None


@dataclass
class SlurmLauncherCfg:
    name: str = "slurm"
    partition: str | None = None  # None: the cluster's default partition
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # None: one task per GPU, or 1 without GPUs
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    time: str = "01:00:00"
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    # how GPUs are requested: --gpus-per-node=N, or --gpus=N (Austral's scripts) for one-node jobs
    gpus_flag: str = "gpus_per_node"
    array_parallelism: int = 8
    signal: str = "USR1"
    signal_delay_s: int = 120
    max_requeues: int = 10
    # a hang the watchdog pins on some ranks, an NCCL or GPU error: requeue the job with that node excluded
    exclude_failed_nodes: bool = True
    # device and network check before training (normia.launch.node_check): auto = jobs of 2+ nodes, true, false
    preflight: str = "auto"
    preflight_slow_factor: float = 3.0
    master_addr: str | None = None  # None: Lightning takes the first node of the job
    # shell lines run before srun: module load, source venv, ...
    setup: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # for every task: a 0600 file the script sources
    srun_args: list[str] = field(default_factory=lambda: ["--kill-on-bad-exit=1"])
    sbatch_args: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH flag: {exclusive: true}
    # sbatch scripts and logs; None: <output_dir>/slurm (a sweep: <sweep dir>/slurm)
    folder: str | None = None
    python: str | None = None  # the python the nodes run; None: this one (sys.executable)
    query_cluster: bool = True  # ask sinfo for partitions/GPUs/time limits when Slurm is reachable
    wait: bool = False  # block until the job(s) end, print the outcome, return its exit code
    dry_run: bool = False
    partitions: dict[str, PartitionLimits] = field(default_factory=dict)

    @property
    def tasks(self) -> int:
        """Tasks (ranks) per node: one per GPU, else launcher.tasks_per_node, else 1."""
        if self.gpus_per_node > 0:
            return self.gpus_per_node
        return self.tasks_per_node or 1

    @property
    def time_s(self) -> int:
        return time_limit_seconds(self.time)


def parse_launcher(node: DictConfig | dict) -> SlurmLauncherCfg:
    """Typed launcher settings; a typo'd key, a wrong type or an impossible value is a one-line UserError."""
    schema = OmegaConf.structured(SlurmLauncherCfg)
    try:
        merged = OmegaConf.merge(schema, node)
        spec: SlurmLauncherCfg = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except ConfigKeyError as err:
        key = str(getattr(err, "full_key", "") or "")
        leaf = key.rpartition(".")[2]
        names = [f.name for f in fields(PartitionLimits if "partitions." in key else SlurmLauncherCfg)]
        raise UserError(f"unknown key 'launcher.{key}'{did_you_mean(leaf, names)}") from None
    except ValidationError as err:  # also a value interpolated from the environment: its text is masked
        key = getattr(err, "full_key", "") or ""
        raise UserError(mask_text(f"launcher.{key}: {str(err).splitlines()[0]}")) from None
    except OmegaConfBaseException as err:
        raise UserError(mask_text(f"launcher: {str(err).splitlines()[0]}")) from None
    _check_values(spec)
    return spec


def _check_values(spec: SlurmLauncherCfg) -> None:
    spec.time = str(spec.time)
    time_limit_seconds(spec.time)
    if spec.nodes < 1:
        raise UserError(f"launcher.nodes={spec.nodes}: a job needs at least 1 node")
    if spec.gpus_per_node < 0:
        raise UserError(f"launcher.gpus_per_node={spec.gpus_per_node} cannot be negative")
    if spec.tasks_per_node is not None and spec.tasks_per_node < 1:
        raise UserError(f"launcher.tasks_per_node={spec.tasks_per_node}: give 1 or more")
    if spec.gpus_per_node > 0 and spec.tasks_per_node not in (None, spec.gpus_per_node):
        raise UserError(
            f"launcher.tasks_per_node={spec.tasks_per_node} with launcher.gpus_per_node={spec.gpus_per_node}: "
            "normia runs one task per GPU; drop launcher.tasks_per_node"
        )
    if str(spec.preflight).lower() not in ("auto", "true", "false"):
        raise UserError(f"launcher.preflight={spec.preflight}: give auto (jobs of 2+ nodes), true or false")
    if spec.preflight_slow_factor <= 1:
        raise UserError(
            f"launcher.preflight_slow_factor={spec.preflight_slow_factor:g}: give a factor above 1 (default 3)"
        )
    for name, limits in spec.partitions.items():
        if limits.min_busbw_gbps is not None and limits.min_busbw_gbps <= 0:
            raise UserError(
                f"launcher.partitions.{name}.min_busbw_gbps={limits.min_busbw_gbps:g}: give a positive floor in GB/s, "
                "or null for none"
            )
    if spec.signal not in SIGNALS:
        raise UserError(f"launcher.signal='{spec.signal}' is not valid{did_you_mean(spec.signal, SIGNALS)}")
    if spec.gpus_flag not in GPU_FLAGS:
        raise UserError(
            f"launcher.gpus_flag='{spec.gpus_flag}' is not valid{did_you_mean(spec.gpus_flag, GPU_FLAGS)}"
        )
    if spec.array_parallelism < 1:
        raise UserError(f"launcher.array_parallelism={spec.array_parallelism}: give 1 or more")
    if not 0 < spec.signal_delay_s < spec.time_s:
        raise UserError(
            f"launcher.signal_delay_s={spec.signal_delay_s} must be between 0 and the time limit ({spec.time}): "
            "the signal comes that many seconds before the end"
        )
    _check_script_values(spec)
    for name, limits in spec.partitions.items():
        if limits.max_time is not None:
            time_limit_seconds(limits.max_time, f"launcher.partitions.{name}.max_time")


def _check_script_values(spec: SlurmLauncherCfg) -> None:
    """Values written into the job script: #SBATCH lines hold no line break (a newline would start a shell command),
    sbatch_args keys are option names, launcher.env keys are variable names, and no secret is typed into
    launcher.setup (the script is kept by Slurm and printed by --dry-run; launcher.env goes to a private file)."""
    from normia.config.names import check_env_name, check_one_line, check_sbatch_key

    for key in ("partition", "account", "qos", "constraint", "time", "master_addr", "python", "folder"):
        check_one_line(getattr(spec, key), f"launcher.{key}")
    from normia.launch.script_check import check_python

    check_python(spec.python)  # written unquoted into the srun line
    for i, arg in enumerate(spec.srun_args):
        check_one_line(arg, f"launcher.srun_args[{i}]")
    for key, value in spec.sbatch_args.items():
        check_sbatch_key(key)
        if isinstance(value, (dict, list)):
            raise UserError(f"launcher.sbatch_args.{key}: give one value (text, number or true)")
        check_one_line(value, f"launcher.sbatch_args.{key}")
    for key in spec.env:
        check_env_name(key)
    for i, line in enumerate(spec.setup):
        if mask_text(line) != line:
            raise UserError(
                f"launcher.setup[{i}] holds a secret ({mask_text(line)}): put the variable in launcher.env instead, "
                "which reaches the job through a file only you can read"
            )
