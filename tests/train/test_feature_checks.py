"""Features that a looser test would not notice if they were switched off: each test below says how it would fail
without its feature (--cfg, the masked overrides.yaml artifact, MLFLOW_TRACKING_URI, debug=overfit|profiler,
compile=true really compiling, FSDP really sharding, the git dirty tag and reproduce's warnings)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from normia.cli import main

HERE = Path(__file__).resolve().parent
SHORT = [
    "experiment=quickstart",
    "logger.system_metrics=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=-1",
    "trainer.check_val_every_n_epoch=null",
]


def _done(workdir: Path) -> dict:
    [done] = (workdir / "outputs").rglob("done.json")
    return json.loads(done.read_text())


def test_cfg_prints_the_composed_config_masked_and_runs_nothing(workdir: Path, capsys) -> None:
    """Without --cfg handling the command would train: outputs/ and mlflow.db would appear and the printed text
    would not be the composed YAML with the override applied and the secret masked."""
    code = main(["train", "experiment=quickstart", "optim.lr=0.0123", "+tags.api_key=hunter2", "--cfg"])
    out = capsys.readouterr().out
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["optim"]["lr"] == 0.0123 and printed["name"] == "quickstart"
    assert printed["tags"]["api_key"] == "***" and "hunter2" not in out
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()


def test_overrides_artifact_and_tag_mask_secrets(workdir: Path) -> None:
    """The overrides.yaml artifact is read back from MLflow: without masking it would hold the secret itself
    (config.yaml alone, which the older test reads, is masked by a different path)."""
    secret = "tok-9f8e7d6c"
    assert main(["train", *SHORT, "trainer.max_steps=3", f"+tags.hub_token={secret}"]) == 0
    run_id = _done(workdir)["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    local = client.download_artifacts(run_id, "overrides.yaml", str(workdir))
    overrides = yaml.safe_load(Path(local).read_text())
    assert "+tags.hub_token=***" in overrides, overrides
    assert "trainer.max_steps=3" in overrides, "the artifact must list the run's overrides"
    assert secret not in Path(local).read_text()
    assert secret not in client.get_run(run_id).data.tags["normia.overrides"]


def test_mlflow_tracking_uri_from_the_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With MLFLOW_TRACKING_URI ignored, the run would land in ./mlflow.db instead of the store it names."""
    store = workdir / "elsewhere" / "store.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    assert main(["train", *SHORT, "trainer.max_steps=3"]) == 0
    summary = _done(workdir)
    assert summary["tracking_uri"] == f"sqlite:///{store}"
    assert not (workdir / "mlflow.db").exists()
    run = MlflowClient(tracking_uri=f"sqlite:///{store}").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"


def test_debug_overfit_trains_on_two_batches_per_epoch(workdir: Path) -> None:
    """debug=overfit sets overfit_batches=2: 3 epochs are 6 steps. If the setting did not reach the Trainer, an
    epoch would be the whole digits training set (~22 batches) and the step count would be ~66."""
    args = [
        "train",
        "experiment=quickstart",
        "debug=overfit",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    assert main([*args, "trainer.max_epochs=3"]) == 0
    summary = _done(workdir)
    assert summary["global_step"] == 6 and summary["epochs"] == 3, summary


def test_debug_profiler_prints_its_report(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """debug=profiler: Lightning's simple profiler reports where time went (through Lightning's logger, which does
    not propagate to the root: caplog's handler is attached to it). Without it no report is written."""
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.addHandler(caplog.handler)
    try:
        args = [
            "train",
            "experiment=quickstart",
            "debug=profiler",
            "logger=none",
            "trainer.enable_progress_bar=false",
        ]
        assert main([*args, "trainer.max_steps=3"]) == 0
    finally:
        lightning_log.removeHandler(caplog.handler)
    assert "FIT Profiler Report" in caplog.text and "run_training_batch" in caplog.text


@pytest.mark.slow
def test_compile_true_runs_the_network_through_dynamo(workdir: Path) -> None:
    """The eager-vs-compiled comparison in test_train_runs passes if compile=true were ignored; here TorchDynamo's
    own counters must show frames it compiled into graphs during the run (zero if it were ignored)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    assert main(["train", *SHORT, "logger=none", "trainer.max_steps=3", "compile=true"]) == 0
    assert counters["stats"]["unique_graphs"] >= 1, dict(counters["stats"])
    assert sum(counters["frames"].values()) >= 1, dict(counters["frames"])
    torch._dynamo.reset()


@pytest.mark.slow
def _fsdp_shards(workdir: Path, monkeypatch: pytest.MonkeyPatch, devices: int) -> tuple[int, list[dict]]:
    """trainer=fsdp on `devices` CPU ranks, 2 steps, with probes.ShardProbe: (exit code, each rank's record)."""
    probe_dir = workdir / "probe"
    # The ranks are subprocesses: they import probes from here.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    code = main(
        [
            "train",
            *SHORT,
            "logger=none",
            "trainer=fsdp",
            "trainer.accelerator=cpu",
            f"trainer.devices={devices}",
            "trainer.max_steps=2",
            "+callbacks.shards._target_=probes.ShardProbe",
            f"+callbacks.shards.out_dir={probe_dir}",
        ]
    )
    files = [probe_dir / f"shards-rank{r}.json" for r in range(devices)]
    return code, [json.loads(f.read_text()) for f in files if f.is_file()]


def test_fsdp_really_shards_the_parameters(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trainer=fsdp on 2 CPU ranks: at the optimizer step each rank holds DTensor shards, together the full
    parameters, and neither the whole of them. Were FSDP to fall back to DDP, the parameters would be plain full
    tensors on both ranks (the weight comparison in test_distributed_and_signals cannot tell the two apart)."""
    code, ranks = _fsdp_shards(workdir, monkeypatch, devices=2)
    assert code == 0
    assert all(
        "ModelParallelStrategy" in r["strategy"] for r in ranks
    )  # normia's sharded-checkpoint subclass
    for name, first in ranks[0]["params"].items():
        second = ranks[1]["params"][name]
        assert first["type"] == second["type"] == "DTensor", name
        assert first["local_numel"] + second["local_numel"] == first["full_numel"], name
    total = sum(p["full_numel"] for p in ranks[0]["params"].values())
    for rank in ranks:
        assert sum(p["local_numel"] for p in rank["params"].values()) < total


def test_fsdp_on_one_process_trains_with_dtensor_parameters(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trainer=fsdp on one device (one GPU of an H200 node, or the CPU here) trains instead of being refused: FSDP2
    with a world size of 1 is how a user checks a sharded config before asking for more GPUs (issue 15 runs it on
    one H200). Before, preflight refused it ("needs at least 2 processes"); the probe also shows FSDP2 really
    wrapped the parameters (DTensor), not a silent fallback to a plain single-device run."""
    code, [probe] = _fsdp_shards(workdir, monkeypatch, devices=1)
    assert code == 0
    assert "ModelParallelStrategy" in probe["strategy"]
    assert {p["type"] for p in probe["params"].values()} == {"DTensor"}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _normia_from(checkout: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI run from a copy of the package (PYTHONPATH first), so git_state() looks at that copy's checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NORMIA_OUTPUT_ROOT")}
    env.update({"PYTHONPATH": str(checkout / "src"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    cmd = [sys.executable, "-m", "normia.cli", *args]
    result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_dirty_tag_and_the_warnings_of_reproduce(tmp_path: Path) -> None:
    """A copy of the package in its own git checkout: a run from the clean tree is tagged git_dirty=false with that
    checkout's commit; after an uncommitted edit, reproduce warns that this tree has uncommitted changes and its run
    is tagged git_dirty=true; reproducing that run warns that it came from a dirty tree. With the dirty check
    switched off the tags would all say false (or unknown) and no warning would be printed."""
    checkout, work = tmp_path / "checkout", tmp_path / "work"
    shutil.copytree(HERE.parents[1] / "src" / "normia", checkout / "src" / "normia", ignore=IGNORED)
    work.mkdir()
    _git(checkout, "init", "-q")
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-q", "-m", "snapshot")
    commit = _git(checkout, "rev-parse", "HEAD")
    _normia_from(checkout, work, "train", *SHORT, "trainer.max_steps=3")
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    [clean] = _runs(client)
    assert clean.data.tags["normia.git_commit"] == commit
    assert clean.data.tags["normia.git_dirty"] == "false"

    init = checkout / "src" / "normia" / "__init__.py"
    init.write_text(init.read_text() + "# an uncommitted edit\n")
    out = _normia_from(checkout, work, "reproduce", clean.info.run_id).stdout
    assert "warning: this tree has uncommitted changes" in out, out
    assert "came from a tree with uncommitted changes" not in out
    dirty = next(r for r in _runs(client) if r.info.run_id != clean.info.run_id)
    assert dirty.data.tags["normia.git_dirty"] == "true"

    out = _normia_from(checkout, work, "reproduce", dirty.info.run_id).stdout
    assert "warning: the recorded run came from a tree with uncommitted changes" in out, out


IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def _runs(client: MlflowClient) -> list:
    return client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
