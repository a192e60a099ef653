"""Fail fast when the ranks of a Slurm job cannot find their master.

Why: Lightning takes MASTER_ADDR (launcher.master_addr) or else the job's first node name. Where node names do not
resolve, every rank other than 0 retries "The IPv4/IPv6 network addresses of (node1, port) cannot be retrieved"
until the job's time limit, holding all its nodes. Checked in each rank before training starts (TrainJob), so the
job fails within seconds with one line naming the address and launcher.master_addr.
"""

from __future__ import annotations

import os
import socket
import time

from normia.errors import UserError

TRANSIENT_S = 60.0  # how long a temporary DNS failure (EAI_AGAIN) is retried before the job gives up


def master_address() -> tuple[str, str]:
    """(address, where it comes from) as Lightning's SLURMEnvironment will pick it."""
    address = os.environ.get("MASTER_ADDR")
    if address:
        return address, "MASTER_ADDR, set from launcher.master_addr"
    from lightning.fabric.plugins.environments import SLURMEnvironment

    nodelist = os.environ.get("SLURM_NODELIST", "127.0.0.1")
    return SLURMEnvironment.resolve_root_node_address(
        nodelist
    ), "the job's first node, launcher.master_addr unset"


def check_master_resolves(transient_s: float = TRANSIENT_S) -> None:
    """UserError at once when the master address does not resolve here (only jobs of more than one rank)."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
        return
    address, source = master_address()
    deadline = time.monotonic() + transient_s
    while True:
        try:
            socket.getaddrinfo(address, None)
            return
        except socket.gaierror as err:
            if err.errno == socket.EAI_AGAIN and time.monotonic() < deadline:
                time.sleep(2.0)
                continue
            raise UserError(
                f"the master address '{address}' ({source}) does not resolve on {socket.gethostname()} "
                f"({err.strerror}); the ranks would wait for it until the time limit: set launcher.master_addr to "
                "an address every node can reach (e.g. the first node's IP address)"
            ) from None
