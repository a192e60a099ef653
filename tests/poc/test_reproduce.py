"""`normia reproduce`: a recorded CPU run re-runs to identical metrics, tagged with the original's id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_reproduce_gives_identical_metrics_on_cpu(normia_cli, workdir: Path) -> None:
    first = normia_cli(
        "train", "experiment=poc_co2_forecast", "trainer.max_epochs=3", *FAST, cwd=workdir, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    (done,) = workdir.glob("outputs/poc_co2_forecast/*/done.json")
    original = json.loads(done.read_text())["mlflow_run_id"]

    again = normia_cli("reproduce", original, "--check", cwd=workdir, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reproduced: every metric identical" in again.stdout
    assert "val/mae" in again.stdout and "metrics differ" not in again.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("poc_co2_forecast").experiment_id)
    assert len(runs) == 2
    reproduced = next(r for r in runs if r.info.run_id != original)
    assert reproduced.data.tags["normia.reproduced_from"] == original
    original_run = client.get_run(original)
    for key in ("val/mae", "val/loss", "train/loss"):
        assert reproduced.data.metrics[key] == original_run.data.metrics[key]

    unknown = normia_cli("reproduce", "0" * 32, cwd=workdir, timeout=120)
    assert unknown.returncode == 2 and "error: unknown MLflow run id '" + "0" * 32 + "'" in unknown.stderr
    assert len(client.search_runs(client.get_experiment_by_name("poc_co2_forecast").experiment_id)) == 2


def test_unknown_run_id_is_a_user_error_and_writes_nothing(normia_cli, workdir: Path) -> None:
    result = normia_cli("reproduce", "0123456789abcdef0123456789abcdef", cwd=workdir, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no MLflow store at sqlite:///") and "mlflow.db" in result.stderr
    assert list(workdir.iterdir()) == []  # no mlflow.db, no outputs/


def test_a_run_resumed_with_changes_explains_why_metrics_differ() -> None:
    from types import SimpleNamespace

    from normia.reproduce import code_warnings, compare

    tags = {"normia.git_commit": "unknown", "normia.resume_changes": "trainer.max_steps: 22 -> 44"}
    warnings = code_warnings(SimpleNamespace(data=SimpleNamespace(tags=tags)))
    assert any("resumed with config changes (trainer.max_steps: 22 -> 44)" in w for w in warnings)
    lines, same = compare({"val/loss": float("inf")}, {"val/loss": float("inf")}, 0.0)
    assert same and "identical" in lines[1]
