"""Tracking to a real `mlflow server` started on loopback by the test, read back over its REST API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from normia.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    log = open(store / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (store / "server.log").read_text()
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


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
