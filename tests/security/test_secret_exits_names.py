"""Issue 26 E: secrets under one-word or prefixed names (GITHUB_PAT, githubtoken, HFTOKEN, db_pass, jwt,
slack_webhook), their values copied through ${oc.env:NAME} or typed under a harmless name, and well-known token
shapes, reach no exit of a real run: MLflow tags, params and artifacts (config.yaml, overrides.yaml, the
normia.overrides tag) in the embedded sqlite store, config.yaml and done.json in the output folder, the checkpoint's
stored config, the exported model's config and checkpoint, and what the commands print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PAT = "gh-pat-value-0123456789"  # under GITHUB_PAT in the environment
ONE_WORD = "one-word-token-9876543210"  # typed under githubtoken, and copied under a harmless name
DB_PASS = "db-pass-value-424242"
HF_SHAPED = "hf_" + "aBcDeFgHiJ" * 4  # a Hugging Face token under a harmless name: masked by its shape
SECRETS = (PAT, ONE_WORD, DB_PASS, HF_SHAPED)
LOCAL = ["experiment=quickstart", "trainer.enable_progress_bar=false", "logger.system_metrics=false"]


def _files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.slow
def test_secret_names_and_copied_values_reach_no_exit_of_a_run_or_its_export(
    tmp_path: Path, normia_cli
) -> None:
    from mlflow.tracking import MlflowClient

    env = {"GITHUB_PAT": PAT, "HFTOKEN": "hftoken-env-value-5555"}
    result = normia_cli(
        "train",
        *LOCAL,
        "logger=mlflow",
        "trainer.max_steps=3",
        "+tags.note=${oc.env:GITHUB_PAT}",
        "+tags.hub=${oc.env:HFTOKEN}",
        f"+tags.githubtoken={ONE_WORD}",
        f"+tags.copy={ONE_WORD}",
        f"+tags.db_pass={DB_PASS}",
        f"+tags.shaped={HF_SHAPED}",
        "+tags.max_tokens=512",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert not [s for s in (*SECRETS, env["HFTOKEN"]) if s in printed], printed[-3000:]
    (done,) = tmp_path.glob("outputs/quickstart/*/done.json")
    run_id = json.loads(done.read_text())["mlflow_run_id"]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["max_tokens"] == "512"  # a counter stays readable
    assert "${oc.env:GITHUB_PAT}" in run.data.tags["normia.overrides"]  # recorded as typed, never resolved
    assert list(tmp_path.glob("outputs/quickstart/*/checkpoints/*.ckpt"))

    exported = normia_cli(
        "export", f"run={run_id}", "registered_name=quick", "--trust", cwd=tmp_path, env=env, timeout=300
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    for secret in (*SECRETS, env["HFTOKEN"]):
        assert secret not in exported.stdout + exported.stderr
        assert _files_holding(tmp_path, secret) == [], (
            secret
        )  # store, artifacts, outputs, checkpoints, export
