"""Issue 16 C: no secret leaves the process. Each exit is tested with the bypasses of the issue: a dict-valued
override, names such as hfToken/Authorization/auth/bearer/tokens, a value interpolated from the environment under a
harmless name, a tracking URI with credentials. Exits here: the terminal (job listings, --cfg, the Slurm dry run and
its script), config.yaml and done.json, MLflow params/tags/artifacts (sqlite store), the local ranks' environment.
The real-cluster exits (sbatch script, submitit's pickle, the job's environment) are in tests/slurm/test_secrets_slurm.py."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

SECRET = "hf_s3cr3tValue42"  # what must never be seen
LOCAL = ["experiment=quickstart", "trainer.enable_progress_bar=false"]
OFFLINE = [*LOCAL, "launcher.query_cluster=false"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NORMIA_OUTPUT_ROOT", raising=False)


def cli(*argv: str) -> tuple[int, str]:
    """`normia argv` in this process; (exit code, stdout+stderr)."""
    from normia.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(list(argv))
    return code, buffer.getvalue()


BYPASSES = [
    pytest.param([f"+launcher.env.HF_TOKEN={SECRET}"], id="launcher.env"),
    pytest.param([f"+tags={{hub_token: {SECRET}}}"], id="dict-override"),
    pytest.param([f"+tags.hfToken={SECRET}"], id="camelCase"),
    pytest.param([f"+tags.Authorization='Bearer {SECRET}'"], id="Authorization"),
    pytest.param([f"+tags.auth={SECRET}"], id="auth"),
    pytest.param([f"+tags.bearer={SECRET}"], id="bearer"),
    pytest.param([f"+tags.tokens={SECRET}"], id="tokens"),
    pytest.param(["+tags.note=${oc.env:HF_TOKEN}"], id="env-interpolation"),
    pytest.param([f"logger.tracking_uri=postgresql://alice:{SECRET}@db.example/mlflow"], id="uri-userinfo"),
]


@pytest.mark.parametrize("extra", BYPASSES)
def test_slurm_dry_run_listing_and_script_show_no_secret(
    extra: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    code, text = cli("train", *OFFLINE, "launcher=slurm", *extra, "--dry-run")
    assert code == 0, text
    assert SECRET not in text, text
    assert "dry run: nothing submitted" in text
    assert list(Path.cwd().iterdir()) == [], "a dry run wrote files"


def test_slurm_script_sources_launcher_env_from_a_file_instead_of_exporting_it() -> None:
    code, text = cli("train", *OFFLINE, "launcher=slurm", f"+launcher.env.HF_TOKEN={SECRET}", "--dry-run")
    assert code == 0, text
    assert "export HF_TOKEN" not in text and "HF_TOKEN=***" in text
    assert "source " in text and "mode 0600" in text


@pytest.mark.parametrize("extra", BYPASSES)
def test_local_dry_run_and_cfg_show_no_secret(extra: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    for flag in ("--dry-run", "--cfg"):
        code, text = cli("train", *LOCAL, *extra, flag)
        assert code == 0, text
        assert SECRET not in text, (flag, text)
    code, text = cli("train", *LOCAL, "-m", "optim.lr=1e-3,2e-3", *extra, "--dry-run")
    assert code == 0 and SECRET not in text, text


def test_secret_typed_into_launcher_setup_is_refused_naming_launcher_env() -> None:
    code, text = cli(
        "train", *OFFLINE, "launcher=slurm", f"+launcher.setup=['export HF_TOKEN={SECRET}']", "--dry-run"
    )
    assert code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "launcher.setup[0]" in lines[0] and "launcher.env" in lines[0], text
    assert SECRET not in text
    assert list(Path.cwd().iterdir()) == []


HERE = Path(__file__).resolve().parent


def _files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.slow
def test_local_run_writes_no_secret_to_mlflow_config_yaml_or_done_json(tmp_path: Path, normia_cli) -> None:
    """A real run with the MLflow sqlite store: params, tags and artifacts (./mlruns), config.yaml and done.json in
    the output folder, and what it prints, hold none of the bypasses' secrets."""
    env = {"HF_TOKEN": SECRET}
    result = normia_cli(
        "train",
        *LOCAL,
        "logger=mlflow",
        "logger.system_metrics=false",
        "trainer.max_steps=3",
        f"+launcher.env.HF_TOKEN={SECRET}",
        f"+tags={{hub_token: {SECRET}}}",
        f"+tags.hfToken={SECRET}",
        f"+tags.Authorization='Bearer {SECRET}'",
        f"+tags.tokens={SECRET}",
        "+tags.note=${oc.env:HF_TOKEN}",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    assert (tmp_path / "mlflow.db").is_file() and list(tmp_path.glob("outputs/quickstart/*/done.json"))
    assert _files_holding(tmp_path, SECRET) == []


@pytest.mark.slow
def test_local_ddp_ranks_get_the_config_in_a_private_file_not_in_their_environment(
    tmp_path: Path, normia_cli
) -> None:
    """Local ranks used to receive the whole unmasked config in NORMIA_JOB_CONFIG, which every process they start
    inherits (and /proc/<pid>/environ shows): each rank now reads it from a 0600 file in a 0700 folder."""
    probe = tmp_path / "probe"
    result = normia_cli(
        "train",
        *LOCAL,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=2",
        "logger=none",
        f"+tags.hub_token={SECRET}",
        "+callbacks.env_probe._target_=env_probe.EnvProbe",
        f"+callbacks.env_probe.needle={SECRET}",
        f"+callbacks.env_probe.out_dir={probe}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(HERE), "NORMIA_TRUSTED_TARGETS": "env_probe."},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        found = json.loads((probe / f"probe-rank{rank}.json").read_text())
        assert found == {"environ": False, "cmdline": False}, (rank, found)
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("where", ["config", "environment"])
def test_tracking_uri_with_credentials_is_used_but_never_shown_logged_or_saved(
    tmp_path: Path, normia_cli, mlflow_server, where: str
) -> None:
    """http://alice:SECRET@host: MLflow gets the credentials; the summary, done.json, config.yaml and the run's
    params/tags/artifacts (the server's store) show the URI without its userinfo."""
    port, store = (
        mlflow_server.rsplit(":", 1)[1],
        tmp_path / "server",
    )  # conftest's server: its store is there
    uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
    given = [f"logger.tracking_uri={uri}"] if where == "config" else []
    result = normia_cli(
        "train",
        *LOCAL,
        "logger=mlflow",
        "logger.system_metrics=false",
        "trainer.max_steps=2",
        *given,
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri} if where == "environment" else None,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr, result.stdout
    assert f"http://***@127.0.0.1:{port}" in result.stdout  # the summary still says where the run went
    done = json.loads(next(tmp_path.glob("outputs/quickstart/*/done.json")).read_text())
    assert done["mlflow_run_id"] and done["tracking_uri"] == f"http://***@127.0.0.1:{port}"
    assert _files_holding(tmp_path, SECRET) == []  # the output folder (and the server's store below it)
    assert list(store.rglob("mlflow.db")), "the run did not reach the server"


def test_slurm_launcher_value_from_a_secret_variable_is_refused_in_one_masked_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong-typed launcher value interpolated from the environment used to end in a traceback quoting it."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    code, text = cli("train", *OFFLINE, "launcher=slurm", "launcher.nodes=${oc.env:HF_TOKEN}", "--dry-run")
    assert code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: launcher.nodes") and SECRET not in text, text
    assert list(Path.cwd().iterdir()) == []


def test_error_message_quoting_a_value_from_a_secret_variable_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    code, text = cli("train", *LOCAL, "trainer.max_steps=${oc.env:HF_TOKEN}", "--dry-run")
    assert code == 2, text
    assert text.startswith("error: trainer.max_steps") and SECRET not in text, text


def test_srun_dry_run_listing_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """`srun normia train ... launcher=srun --dry-run` inside an allocation: rank 0 lists each job's overrides."""
    for key, value in {
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_NNODES": "1",
        "SLURM_JOB_ID": "7",
    }.items():
        monkeypatch.setenv(key, value)
    code, text = cli(
        "train",
        *LOCAL,
        "launcher=srun",
        f"+tags={{hub_token: {SECRET}}}",
        f"+tags.hfToken={SECRET}",
        "--dry-run",
    )
    assert code == 0 and "dry run: nothing run" in text, text
    assert SECRET not in text and "hub_token: ***" in text, text
