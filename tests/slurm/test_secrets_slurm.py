"""Issue 16 C and D on the real two-node cluster: a job that needs a secret (launcher.env) gets it, and the secret is
nowhere else. Not in the sbatch script Slurm keeps, not in what normia prints, not in config.yaml/done.json, not in the
MLflow store (params, tags, artifacts of the sqlite store); submitit's pickle and the env file that do hold it sit in
a folder only the user can enter, in files only the user can read (the job unpickles from there)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

SECRET = "hf_s3cr3tValue42"
COMMON = [
    "experiment=quickstart",
    "launcher=slurm",
    "launcher.master_addr=127.0.0.1",  # the fake nodes' names do not resolve
    "launcher.cpus_per_task=1",
    "launcher.time=00:15:00",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "logger=mlflow",
    "logger.system_metrics=false",
    "launcher.wait=true",
]


def normia_train(*argv: str) -> tuple[int, str]:
    from normia.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(["train", *argv])
    return code, buffer.getvalue()


def test_launcher_env_reaches_the_job_and_the_secret_is_nowhere_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # mlflow.db and ./mlruns (artifacts) land here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)  # the submitting shell has it too: +tags.note=${oc.env:HF_TOKEN}
    out = tmp_path / "run"
    code, text = normia_train(
        *COMMON,
        f"paths.output_dir={out}",
        f"+launcher.env.HF_TOKEN={SECRET}",
        "launcher.setup=['test -n \"$HF_TOKEN\" && echo token-present']",
        f"+tags={{hub_token: {SECRET}}}",
        "+tags.note=${oc.env:HF_TOKEN}",
        f"+tags.hfToken={SECRET}",
    )
    assert code == 0, text
    assert re.search(r"job \d+: COMPLETED", text), text
    assert SECRET not in text, text
    job_id = re.search(r"submitted job (\d+)", text).group(1)
    folder = out / "slurm"
    assert (
        "token-present" in (folder / job_id / f"{job_id}_0_log.out").read_text()
    )  # the job had its variable

    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    holders = []
    for path in sorted(tmp_path.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if SECRET.encode() in path.read_bytes():
            holders.append(path)
            assert path.is_relative_to(folder), f"{path} holds the secret"
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"
    # only the env file and submitit's pickles hold it; the script Slurm keeps does not
    assert {p.suffix for p in holders} <= {".sh", ".pkl"}, holders
    assert [p.name for p in holders if p.suffix == ".sh"] == [p.name for p in folder.glob("env-*.sh")], (
        holders
    )
    script = (folder / job_id / f"{job_id}_submission.sh").read_text()
    assert SECRET not in script and "source " in script and "export HF_TOKEN" not in script
    assert (tmp_path / "mlflow.db").is_file() and (out / "done.json").is_file()
