"""Refuse a Slurm request that cannot run, before it waits in the queue: unknown partition, more GPUs per node
than its nodes have, a time limit above the partition's, more nodes than it has."""

from __future__ import annotations

from normia.errors import UserError, did_you_mean
from normia.launch.cluster_info import PartitionInfo
from normia.launch.spec import SlurmLauncherCfg
from normia.launch.timelimit import format_seconds, time_limit_seconds


def check_request(spec: SlurmLauncherCfg, live: dict[str, PartitionInfo] | None) -> str | None:
    """Validate spec against the preset and (when reachable) the live cluster; return the partition used."""
    partition = spec.partition
    if live:
        partition = _check_live(spec, live)
    if spec.partitions:
        _check_preset(spec, live)
    return partition


def _check_preset(spec: SlurmLauncherCfg, live: dict[str, PartitionInfo] | None) -> None:
    if spec.partition is None:
        return
    limits = spec.partitions.get(spec.partition)
    if limits is None:
        if live and spec.partition in live:
            return  # the cluster has it even if the preset does not: the cluster wins
        raise UserError(
            f"unknown partition '{spec.partition}' for launcher={spec.name}"
            f"{did_you_mean(spec.partition, spec.partitions)}; add it under launcher.partitions if it is new"
        )
    if limits.max_gpus_per_node is not None and spec.gpus_per_node > limits.max_gpus_per_node:
        raise UserError(
            f"launcher.gpus_per_node={spec.gpus_per_node} but partition '{spec.partition}' allows at most "
            f"{limits.max_gpus_per_node} GPUs per node (launcher={spec.name} preset); use more launcher.nodes instead"
        )
    ranks = spec.nodes * max(spec.gpus_per_node, 1)
    if limits.mig and ranks > 1:
        raise UserError(
            f"partition '{spec.partition}' hands out MIG slices: a process sees one slice and NCCL does not span "
            f"slices, so a job of {ranks} ranks cannot train there; use launcher.nodes=1 launcher.gpus_per_node=1 "
            "on it (single-GPU runs and search trials), or a partition of whole GPUs for several ranks"
        )
    if spec.gpus_per_node > 0 and limits.max_gpus_per_node == 0:
        raise UserError(
            f"partition '{spec.partition}' has no GPUs; pick a GPU partition or launcher.gpus_per_node=0"
        )
    if limits.max_time is not None:
        _check_time(spec, time_limit_seconds(limits.max_time), spec.partition)


def _check_live(spec: SlurmLauncherCfg, live: dict[str, PartitionInfo]) -> str:
    if spec.partition is None:
        default = next((p for p in live.values() if p.default), None)
        if default is None:
            raise UserError(
                f"this cluster has no default partition; set launcher.partition (one of {', '.join(live)})"
            )
        info = default
    elif spec.partition in live:
        info = live[spec.partition]
    else:
        raise UserError(f"unknown partition '{spec.partition}' (sinfo){did_you_mean(spec.partition, live)}")
    if spec.gpus_per_node > info.max_gpus_per_node:
        have = f"at most {info.max_gpus_per_node}" if info.max_gpus_per_node else "no"
        raise UserError(
            f"launcher.gpus_per_node={spec.gpus_per_node} but the nodes of partition '{info.name}' have {have} "
            "GPUs (sinfo GRES); ask for fewer per node and more launcher.nodes"
        )
    if spec.nodes > info.nodes:
        raise UserError(f"launcher.nodes={spec.nodes} but partition '{info.name}' has {info.nodes} node(s)")
    if info.max_time_s is not None:
        _check_time(spec, info.max_time_s, info.name)
    return info.name


def _check_time(spec: SlurmLauncherCfg, limit_s: int, partition: str) -> None:
    if spec.time_s > limit_s:
        raise UserError(
            f"launcher.time={spec.time} is longer than partition '{partition}' allows ({format_seconds(limit_s)}); "
            "ask for less (the job checkpoints and requeues itself at the limit)"
        )
