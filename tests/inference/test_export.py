"""normia export: a run becomes a registered MLflow pyfunc model (signature, input example, source run and checkpoint
recorded) whose predictions, loaded by MLflow or served over REST by `mlflow models serve`, equal normia predict's.
Real tiny runs, a real sqlite store with its Model Registry, a real scoring server on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from inference_data import CLASSES, french_series, write_label_table
from mlflow import MlflowClient

import normia
from normia.cli import main
from normia.inference.predictors import image_frame

pytestmark = pytest.mark.slow  # trains two tiny runs and starts a scoring server: ~60 s on 2 cores

QUIET = ["logger.system_metrics=false", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store(folder: Path) -> str:
    """The test's sqlite store by absolute path: MLflow caches stores by URI string within a process, so a relative
    sqlite:///mlflow.db would stay the first test's file."""
    return f"sqlite:///{folder / 'mlflow.db'}"


def load_registered(folder: Path, uri: str) -> mlflow.pyfunc.PyFuncModel:
    """mlflow.pyfunc.load_model from this test's store, leaving MLflow's global tracking URI unset afterwards."""
    mlflow.set_tracking_uri(store(folder))
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)


def served_predictions(model_uri: str, frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Start `mlflow models serve` on loopback on model_uri, POST frame as dataframe_split, stop the server."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store(folder)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # uvicorn of this venv
    log = open(folder / "serve.log", "w")  # noqa: SIM115 (closed below)
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    proc = subprocess.Popen(
        [*command, "-p", str(port), "-h", "127.0.0.1"],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (folder / "serve.log").read_text()
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.5)
        body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}, default=str).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_forecaster_export_registers_and_serves_the_same_forecasts(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pm10 = french_series(workdir / "pm10.csv", n=120)
    summary = normia.train(
        [
            "experiment=poc_co2_forecast",
            "data=series_csv",
            f"data.path={pm10}",
            "data.date_column=Date",
            "data.input_len=14",
            "data.horizon=7",
            "model.patch_len=7",
            "model.season_length=7",
            *QUIET,
        ]
    )
    capsys.readouterr()
    assert main(["export", f"run={summary.run_id}", "registered_name=pm10_rouen"]) == 0
    printed = capsys.readouterr().out
    assert "registered models:/pm10_rouen/1" in printed and summary.run_id in printed

    client = MlflowClient(store(workdir))
    version = client.get_model_version("pm10_rouen", "1")
    assert version.tags["normia.source_run_id"] == summary.run_id
    assert version.tags["normia.source_checkpoint"] == str(summary.checkpoint)
    info = mlflow.models.get_model_info("models:/pm10_rouen/1")
    assert [c.name for c in info.signature.inputs.inputs] == ["Date", "PM10 (µg/m3)"]
    assert [c.name for c in info.signature.outputs.inputs] == ["Date", "PM10 (µg/m3)"]

    history = pd.read_csv(pm10, sep=";", decimal=",", encoding="utf-8-sig")
    local = normia.predict(summary.run_id, pm10)
    loaded = load_registered(workdir, "models:/pm10_rouen/1").predict(history)
    served = served_predictions("models:/pm10_rouen/1", history, workdir)
    for remote in (loaded, served):
        assert remote["Date"].tolist() == local["Date"].dt.strftime("%Y-%m-%d").tolist()
        np.testing.assert_allclose(remote["PM10 (µg/m3)"], local["PM10 (µg/m3)"], rtol=1e-6)


def test_label_table_and_digits_models_predict_the_same_through_mlflow(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = write_label_table(workdir / "partenaire")
    images = normia.train(
        [
            "experiment=poc_digits_resnet",
            "data=image_table",
            f"data.path={table}",
            "data.batch_size=8",
            "model.in_channels=3",
            "model.num_classes=3",
            *QUIET,
        ]
    )
    digits = normia.train(["experiment=quickstart", *QUIET])
    assert main(["export", f"ckpt={images.checkpoint}", "registered_name=formes"]) == 0
    assert main(["export", f"run={digits.run_id}"]) == 0  # registered under the run's name

    files = sorted(table.parent.glob("*.png"))[:5]
    frame = image_frame(files, "fichier", root=table.parent)
    remote = load_registered(workdir, "models:/formes/1").predict(frame)
    local = normia.predict(images.run_id, table.parent).head(5)
    assert remote["fichier"].tolist() == local["fichier"].tolist()
    assert remote["class"].tolist() == local["class"].tolist() and set(local["class"]) <= set(CLASSES)
    np.testing.assert_allclose(
        remote[[f"p_{c}" for c in CLASSES]], local[[f"p_{c}" for c in CLASSES]], rtol=1e-6
    )

    from sklearn.datasets import load_digits

    pixels = pd.DataFrame(load_digits().data[:4], columns=[f"pixel_{i}" for i in range(64)])
    remote = load_registered(workdir, "models:/quickstart/1").predict(pixels)
    local = normia.predict(digits.checkpoint, pixels)
    assert remote["class"].tolist() == local["class"].tolist()
    np.testing.assert_allclose(remote["p_3"], local["p_3"], rtol=1e-6)


def test_refused_exports_write_nothing(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = normia.train(["experiment=quickstart", "trainer.max_steps=2", *QUIET])
    client = MlflowClient(store(workdir))
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    capsys.readouterr()
    cases = [
        (["export", f"run={summary.run_id}", "registered_name=a/b"], "registered_name='a/b'"),
        # names models:/NAME/1 reads as a query, a fragment or a space (issue 25): registered, never loadable
        (
            ["export", f"run={summary.run_id}", "registered_name=pm10?x=1"],
            "models:/pm10?x=1/1 could not load it",
        ),
        (["export", f"run={summary.run_id}", "registered_name=pm10#2"], "registered_name='pm10#2'"),
        (["export", f"run={summary.run_id}", "registered_name=pm10 rouen"], "registered_name='pm10 rouen'"),
        (["export", f"run={summary.run_id}", "registered_name=-pm10"], "registered_name='-pm10'"),
        (["export", "ckpt=missing.ckpt"], "checkpoint missing.ckpt does not exist"),
        (["export", f"run={summary.run_id}", "format=tflite"], "unknown format=tflite"),
        (["export", f"ckpt={summary.checkpoint}", "data.path=absent.csv"], "input not found: absent.csv"),
    ]
    for args, expected in cases:
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and expected in err and err.count("\n") == 1, (args, err)
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before
    assert client.search_registered_models() == []


def test_poc_co2_and_digits_resnet_predict_and_export_as_trained(workdir: Path) -> None:
    """The PoCs as configured (statsmodels' CO2, sklearn's digits as images): the export's input example comes from
    their packaged data, and MLflow's copy predicts what normia.predict does."""
    from sklearn.datasets import load_digits

    from normia.data.series import statsmodels_series

    co2 = normia.train(["experiment=poc_co2_forecast", *QUIET])
    monthly = statsmodels_series("co2").set_index("date").resample("MS").mean().interpolate()
    recent = monthly.tail(48).reset_index()
    recent["date"] = recent["date"].dt.strftime("%Y-%m-%d")
    forecast = normia.predict(co2.run_id, recent)
    assert forecast["date"].dt.strftime("%Y-%m-%d").tolist()[:2] == ["2002-01-01", "2002-02-01"]
    assert len(forecast) == 12 and forecast["co2"].between(360, 385).all()  # ppm, not standardised
    assert co2.metrics["val/mae_orig"] == pytest.approx(co2.metrics["val/mae"] * 12.95, rel=0.01)
    assert co2.mlflow_run().data.tags["normia.data.units"] == "ppm"

    resnet = normia.train(["experiment=poc_digits_resnet", "trainer.limit_train_batches=5", *QUIET])
    assert main(["export", f"run={co2.run_id}"]) == 0
    assert main(["export", f"run={resnet.run_id}"]) == 0
    served_co2 = load_registered(workdir, "models:/poc_co2_forecast/1").predict(recent)
    np.testing.assert_allclose(served_co2["co2"], forecast["co2"], rtol=1e-6)
    pixels = pd.DataFrame(load_digits().data[:5], columns=[f"pixel_{i}" for i in range(64)])
    served_digits = load_registered(workdir, "models:/poc_digits_resnet/1").predict(pixels)
    local = normia.predict(resnet.checkpoint, pixels)
    assert served_digits["class"].tolist() == local["class"].tolist()
    np.testing.assert_allclose(served_digits["p_0"], local["p_0"], rtol=1e-6)


def test_format_export_logs_a_checked_torch_export_program(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    summary = normia.train(["experiment=quickstart", "trainer.max_steps=3", *QUIET])
    assert main(["export", f"run={summary.run_id}", "format=export", "registered_name=digits_pt2"]) == 0
    client = MlflowClient(store(workdir))
    export_id = client.get_model_version("digits_pt2", "1").run_id
    run = client.get_run(export_id)
    assert run.data.metrics["export/max_abs_error"] <= 1e-4
    assert run.data.tags["normia.export.program"] == "export: program/model.pt2"
    program = torch.export.load(
        client.download_artifacts(export_id, "program/model.pt2", str(workdir))
    ).module()
    model, _ = normia.load_run(summary.checkpoint)
    pixels = torch.rand(7, 64)
    torch.testing.assert_close(program(pixels), model(pixels))
    capsys.readouterr()
    assert main(["export", f"run={summary.run_id}", "format=onnx"]) == 2
    assert "format=onnx needs the onnx" in capsys.readouterr().err


def test_a_run_name_becomes_a_registrable_name() -> None:
    from normia.inference.pyfunc import REGISTERED_NAME, registered_name_of

    for run_name, expected in [
        ("pm10 rouen/v2", "pm10-rouen-v2"),
        ("quickstart", "quickstart"),
        ("??", "normia-model"),
    ]:
        assert registered_name_of(run_name) == expected and REGISTERED_NAME.fullmatch(expected)
