"""What a Slurm job's plan says beside its resources (issue 25 D): the GPU model of the partition, where the
checkpoints go and that the job resumes by itself, and a warning when a multi-node job reads or writes node-local
storage (each node has its own /tmp: rank 0 would write checkpoints the other nodes never see, and a requeued job on
other nodes would find none).

Import-light (no torch, no Lightning): it runs for every submission and dry run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normia.launch.spec import SlurmLauncherCfg
from normia.tracking.data_inputs import is_location_key

# Storage every node has its own copy of. $LOCAL_WORK_DIR is Austral's node-local scratch (slurm/austral/README.md);
# $TMPDIR and $SLURM_TMPDIR are where clusters put a job's node-local temporary folder.
NODE_LOCAL_PREFIXES = ("/tmp/", "/var/tmp/", "/dev/shm/", "/local/", "/scratch_local/")
NODE_LOCAL_VARIABLES = ("LOCAL_WORK_DIR", "TMPDIR", "SLURM_TMPDIR")


def gpu_model(spec: SlurmLauncherCfg, partition: str | None) -> str | None:
    """'h200 (H200 nodes)' from the preset's partition entry; None when the preset does not say."""
    limits = spec.partitions.get(partition or "")
    if limits is None or not limits.gpu:
        return None
    return limits.gpu + (f" ({limits.note})" if limits.note else "")


def _locations(cfg: DictConfig) -> Iterator[tuple[str, str]]:
    """(key, value) of every path the job reads or writes: its output folder and the location keys of data and model."""
    yield "paths.output_dir", str(cfg.paths.output_dir)
    for section in ("data", "model"):
        node = cfg.get(section)
        if node is None:
            continue
        container: Any = OmegaConf.to_container(node, resolve=False)
        yield from _walk(container, section)


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                yield from _walk(value, f"{prefix}.{key}")
            elif isinstance(value, str) and is_location_key(str(key)):
                yield f"{prefix}.{key}", value


def _node_local(value: str) -> str | None:
    """Why `value` is on node-local storage, or None."""
    for variable in NODE_LOCAL_VARIABLES:
        if f"${variable}" in value or f"${{{variable}}}" in value or f"oc.env:{variable}" in value:
            return f"${variable}"
        place = os.environ.get(variable)
        if place and place != "/" and (value == place or value.startswith(place.rstrip("/") + "/")):
            return f"${variable} ({place})"
    for prefix in NODE_LOCAL_PREFIXES:
        if value.startswith(prefix) or value == prefix.rstrip("/"):
            return prefix.rstrip("/")
    return None


def node_local_warnings(cfg: DictConfig, spec: SlurmLauncherCfg) -> list[str]:
    """One warning per path of a multi-node job that is on node-local storage; [] for a one-node job."""
    if spec.nodes < 2:
        return []
    warnings = []
    for key, value in _locations(cfg):
        where = _node_local(value)
        if where is not None:
            warnings.append(
                f"warning: {key}={value} is on node-local storage ({where}) but the job spans {spec.nodes} nodes: "
                "each node sees its own copy; use a shared filesystem (e.g. your work directory)"
            )
    return warnings


def checkpoint_line(cfg: DictConfig, spec: SlurmLauncherCfg) -> str:
    """Where the checkpoints go, how often, and that a preempted or timed-out job resumes from them by itself."""
    ckpt = cfg.get("checkpoint") or {}
    cadence = [
        f"every {ckpt.get('every_n_steps')} steps" if ckpt.get("every_n_steps") else "",
        f"every {ckpt.get('every_minutes')} min" if ckpt.get("every_minutes") else "",
    ]
    every = " and ".join(c for c in cadence if c) or "at the end only"
    return (
        f"checkpoints: {cfg.paths.output_dir}/checkpoints, {every}; a preempted or timed-out job saves, is requeued "
        f"and resumes from the last one by itself (up to launcher.max_requeues={spec.max_requeues})"
    )
