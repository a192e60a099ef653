"""System metrics from every node of a multi-node run, not from rank 0's node only (issue 23).

MLflow's monitor samples the machine it runs on; normia's MLflow logger starts it on global rank 0 only. In a run of
several nodes, the first rank of every other node starts one too, into the same run, with MLflow's node id set to
the node's name: `system/<node>/cpu_utilization_percentage`, `system/<node>/gpu_0_utilization_percentage`, ... The
run id reaches the other nodes in one broadcast at train start (rank 0 creates the run there). Only with a tracking
server or database (http(s), postgresql, mysql, mssql): several nodes writing one sqlite file on a shared file system
risk "database is locked" or a damaged store, so with sqlite or a folder rank 0 says so and only its node reports.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from normia.node import node_name

SHARED_STORES = ("http", "https", "postgresql", "mysql", "mssql")


def serves_many_writers(tracking_uri: str) -> bool:
    """A store that several machines may write at once: a tracking server or a database server."""
    scheme = tracking_uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in tracking_uri else ""
    return scheme in SHARED_STORES


class NodeSystemMetrics(L.Callback):
    """Starts MLflow's system metrics monitor on the first rank of each node other than rank 0's, node-prefixed.

    Args:
        tracker: the run's MlflowTracker (every rank has one; only rank 0's creates the run).
    """

    def __init__(self, tracker: Any):
        self.tracker = tracker
        self._monitor: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.num_nodes < 2:
            return
        self.tracker.node_id = node_name()  # rank 0's own monitor: prefixed with its node as the others' are
        if trainer.is_global_zero and not serves_many_writers(self.tracker.tracking_uri):
            print(
                "note: MLflow system metrics come from rank 0's node only: the other nodes need an MLflow server "
                "(logger.tracking_uri=http://...), not one sqlite file written from several machines"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.num_nodes < 2 or not serves_many_writers(self.tracker.tracking_uri):
            return
        import torch.distributed as dist

        run_id = [self.tracker.version if trainer.is_global_zero else None]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast_object_list(run_id, src=0)
        if trainer.local_rank == 0 and not trainer.is_global_zero and run_id[0]:
            from normia.tracking.mlflow_logger import start_system_metrics

            self._monitor = start_system_metrics(run_id[0], self.tracker.tracking_uri, node_name())

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
