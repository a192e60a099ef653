"""normia export writes no pickle, and a registered model whose files changed after export is not loaded (issue 26,
part C). A real `mlflow server` on loopback with proxied artifacts: the files are altered through its HTTP API, as
anyone who can reach an unauthenticated server could."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

import normia
from normia.cli import main
from normia.errors import UserError

pytestmark = pytest.mark.slow  # a tiny training run, an export and an MLflow server: ~40 s each on 2 cores

QUIET = ["logger.system_metrics=false", "trainer.enable_progress_bar=false", "trainer.max_steps=2"]
MODEL = "models:/digits/1"
FRESH_LOAD = """
import json, sys
import mlflow, pandas as pd
from sklearn.datasets import load_digits
pixels = pd.DataFrame(load_digits().data[:4], columns=[f"pixel_{i}" for i in range(64)])
print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(pixels)["p_3"].tolist()))
"""


@pytest.fixture
def exported(workdir: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> normia.RunSummary:
    """quickstart trained into the working folder's store, exported to the server as models:/digits/1."""
    summary = normia.train(["experiment=quickstart", *QUIET])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert main(["export", f"ckpt={summary.checkpoint}", "registered_name=digits"]) == 0
    return summary


def digits(count: int = 4) -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return pd.DataFrame(load_digits().data[:count], columns=[f"pixel_{i}" for i in range(64)])


def load_in_process(uri: str, server: str) -> mlflow.pyfunc.PyFuncModel:
    mlflow.set_tracking_uri(server)
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_exported_model_holds_no_pickle_and_loads_in_a_fresh_process(
    exported: normia.RunSummary, mlflow_server: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "model").mkdir()
    root = Path(
        mlflow.artifacts.download_artifacts(
            MODEL, dst_path=str(workdir / "model"), tracking_uri=mlflow_server
        )
    )
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".cloudpickle"))], sorted(files)
    flavor = mlflow.models.Model.load(str(root / "MLmodel")).flavors["python_function"]
    assert flavor["loader_module"] == "normia.inference.pyfunc_loader" and "python_model" not in flavor
    assert flavor["data"] == "data/normia_run"
    for name in ("MLmodel", "requirements.txt", "conda.yaml", "python_env.yaml"):
        assert "cloudpickle" not in files[name].read_text(encoding="utf-8"), name
    ckpt = torch.load(
        files["data/normia_run/checkpoints/model.ckpt"], weights_only=True
    )  # plain tensors and data
    assert (
        "config" not in ckpt["normia"]
    )  # the unredacted config copy stays out; config.yaml is the redacted one

    version = MlflowClient(mlflow_server).get_model_version("digits", "1")
    recorded = json.loads(version.tags["normia.sha256"])
    del files["registered_model_meta"]  # written by MLflow on the downloading side
    assert recorded == {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in files.items()}

    code, out, err = cli(["export", f"verify={MODEL}"], capsys)
    assert code == 0 and f"verified {MODEL}: its {len(files)} files match" in out, err

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, MODEL],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "warning: normia" not in fresh.stderr  # loaded as a registered version: checked, nothing to say
    local = normia.predict(exported.checkpoint, digits())
    np.testing.assert_allclose(json.loads(fresh.stdout.strip().splitlines()[-1]), local["p_3"], rtol=1e-6)


def _rewrite_config(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace("_target_:", "_target_:  ", 1), encoding="utf-8")


def _rewrite_weights(path: Path) -> None:
    content = torch.load(path, weights_only=True)
    content["state_dict"] = {k: torch.zeros_like(v) for k, v in content["state_dict"].items()}
    torch.save(content, path)


@pytest.mark.parametrize(
    ("suffix", "rewrite"),
    [("normia_run/config.yaml", _rewrite_config), ("normia_run/checkpoints/model.ckpt", _rewrite_weights)],
)
def test_a_file_rewritten_after_registration_is_refused_naming_it(
    exported: normia.RunSummary,
    mlflow_server: str,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
    rewrite,
) -> None:
    client = MlflowClient(mlflow_server)
    location = client.get_model_version_download_uri("digits", "1")  # where the registry reads its files
    repo = get_artifact_repository(location, tracking_uri=mlflow_server)
    (workdir / "copy").mkdir()
    root = Path(repo.download_artifacts("", dst_path=str(workdir / "copy")))
    local = next(p for p in root.rglob("*") if p.as_posix().endswith(suffix))
    name = local.relative_to(root).as_posix()
    rewrite(local)
    repo.log_artifact(str(local), str(Path(name).parent))  # through the server's HTTP API, over the original

    code, out, err = cli(["export", f"verify={MODEL}"], capsys)
    assert code == 2 and err.count("\n") == 1 and out == "", err
    assert f"the sha256 of {name} differs" in err and "normia.sha256" in err, err
    with pytest.raises(
        UserError, match=re.escape(f"the sha256 of {name} differs")
    ):  # MLflow's own loading: our loader
        load_in_process(MODEL, mlflow_server)


def test_a_version_without_its_digest_tag_is_refused(
    exported: normia.RunSummary, mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    MlflowClient(mlflow_server).delete_model_version_tag("digits", "1", "normia.sha256")
    code, _, err = cli(["export", f"verify={MODEL}"], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{MODEL} has no normia.sha256 tag" in err, err
    with pytest.raises(UserError, match=r"has no normia\.sha256 tag"):
        load_in_process(MODEL, mlflow_server)
