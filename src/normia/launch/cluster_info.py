"""What the live cluster says about its partitions (sinfo), so a request is checked against the real limits.

Returns None when Slurm cannot be asked (no sinfo, no controller): the preset's limits are then all we check.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from normia.launch.slurm_commands import slurm_output
from normia.launch.timelimit import sinfo_limit_seconds

_GPU_GRES = re.compile(r"gpu(?::[^:(,]+)?:(\d+)")


@dataclass
class PartitionInfo:
    name: str
    default: bool
    max_time_s: int | None  # None: unlimited
    nodes: int
    max_gpus_per_node: int  # 0 when no node of the partition has GPUs (as GRES)
    max_cpus_per_node: int


def gpus_in_gres(gres: str) -> int:
    """GPU count of one node's GRES string: 'gpu:2', 'gpu:h200:4(S:0-1)', 'gpu:a100:4,shard:8', '(null)'."""
    return max((int(n) for n in _GPU_GRES.findall(gres)), default=0)


def live_partitions(timeout_s: float = 10.0) -> dict[str, PartitionInfo] | None:
    """Partitions of the cluster this machine submits to, or None if sinfo is missing or does not answer."""
    if shutil.which("sinfo") is None:
        return None
    out = slurm_output(["sinfo", "-h", "-N", "-o", "%P|%l|%N|%G|%c"], timeout_s)
    return parse_sinfo(out) if out is not None else None


def parse_sinfo(text: str) -> dict[str, PartitionInfo]:
    """Parse `sinfo -h -N -o '%P|%l|%N|%G|%c'` (one line per node and partition)."""
    parts: dict[str, PartitionInfo] = {}
    nodes: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        raw, limit, node, gres, cpus = fields
        name = raw.rstrip("*")
        info = parts.setdefault(
            name, PartitionInfo(name, raw.endswith("*"), sinfo_limit_seconds(limit), 0, 0, 0)
        )
        nodes.setdefault(name, set()).add(node)
        info.nodes = len(nodes[name])
        info.max_gpus_per_node = max(info.max_gpus_per_node, gpus_in_gres(gres))
        if cpus.isdigit():
            info.max_cpus_per_node = max(info.max_cpus_per_node, int(cpus))
    return parts
