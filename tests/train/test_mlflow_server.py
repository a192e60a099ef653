"""Tracking to a real `mlflow server` started on loopback by the test, read back over its REST API."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from normia.cli import main


def _rest(uri: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_run_logged_to_a_server_reads_back_over_rest(workdir: Path, mlflow_server: str) -> None:
    code = main(
        [
            "train",
            "experiment=quickstart",
            f"logger.tracking_uri={mlflow_server}",
            "logger.system_metrics=false",
            "trainer.enable_progress_bar=false",
            "trainer.max_epochs=2",
        ]
    )
    assert code == 0
    assert not (workdir / "mlflow.db").exists(), "with a server URI nothing goes to the local sqlite store"
    experiment = _rest(mlflow_server, "experiments/get-by-name?experiment_name=quickstart")["experiment"]
    runs = _rest(mlflow_server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m for m in run["data"]["metrics"]}
    assert metrics["val/acc"]["value"] > 0.5 and metrics["val/acc"]["step"] > 0
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["optim.name"] == "adamw" and params["trainer.max_epochs"] == "2"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["normia.experiment"] == "quickstart" and "normia.git_commit" in tags
    history = _rest(
        mlflow_server, f"metrics/get-history?run_id={run['info']['run_id']}&metric_key=train/loss"
    )
    assert len(history["metrics"]) >= 3
