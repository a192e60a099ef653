"""`normia train ... launcher=slurm|austral --dry-run` through the real CLI, without a cluster (launcher.query_cluster
=false): what the dry run shows per job, and the mistakes refused before anything is written or submitted. Fast."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

from normia.launch.python_env import local_torch_build

OFFLINE = ["experiment=quickstart", "launcher.query_cluster=false", "trainer.enable_progress_bar=false"]
CPU_TORCH = local_torch_build() is None or not local_torch_build().has_gpu_support  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default outputs/ and mlflow.db land here, so 'nothing written' can be checked."""
    monkeypatch.chdir(tmp_path)


def dry_run(*argv: str) -> tuple[int, str]:
    """`normia train argv --dry-run` in this process; (exit code, stdout+stderr)."""
    from normia.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(["train", *OFFLINE, *argv, "--dry-run"])
    return code, buffer.getvalue()


def assert_refused(code: int, text: str, message: str) -> None:
    """Exit 2, one line naming the key and the fix, nothing written in the working folder."""
    assert code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert message in lines[0], text
    assert list(Path.cwd().iterdir()) == [], "a refused request wrote files"


def test_austral_preset_renders_its_partition_gpus_signal_and_modules() -> None:
    """The preset itself, as slurm/austral/README.md uses it; launcher.python=python: the module's Python."""
    code, text = dry_run(
        "launcher=austral",
        "trainer=ddp",
        "launcher.partition=gpu_h200",
        "launcher.nodes=2",
        "launcher.gpus_per_node=4",
        "launcher.python=python",
    )
    assert code == 0, text
    for line in (
        "#SBATCH --partition=gpu_h200",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",  # --gpus=N is only for one node
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=24",  # the preset's default for gpu_h200
        "#SBATCH --time=04:00:00",
        "#SBATCH --signal=USR1@180",
        "#SBATCH --requeue",
        "module purge",
        "module load aidl/pytorch/2.10.0-py3.12-cuda12.6",
        "python -u -m submitit.core._submit",
        "each rank: accelerator=gpu, devices=4 per node x 2 node(s), strategy=ddp",
        "resources: 2 node(s) x 4 GPU(s), 8 rank(s), partition gpu_h200",
        "master address: the job's first node (set launcher.master_addr where node names do not resolve)",
        "pre-flight: devices and network checked before training (launcher.preflight=auto); a failing or hanging "
        "node is excluded and the job requeued",
    ):
        assert line in text, line
    assert "dry run: nothing submitted (1 job(s) would be)" in text
    assert list(Path.cwd().iterdir()) == []
    code, text = dry_run("launcher=austral", "trainer=gpu", "launcher.python=python")  # the preset's defaults
    assert code == 0, text
    assert "pre-flight: off (launcher.preflight=auto; auto checks jobs of 2+ nodes)" in text
    assert "#SBATCH --gpus=1" in text and "#SBATCH --partition=gpu" in text and "--cpus-per-task=8" in text


def test_austral_preset_refuses_an_unknown_partition_and_too_many_gpus() -> None:
    code, text = dry_run(
        "launcher=austral", "trainer=gpu", "launcher.partition=gpu_h100", "launcher.python=python"
    )
    assert_refused(code, text, "unknown partition 'gpu_h100' for launcher=austral (did you mean 'gpu_h200'?)")
    code, text = dry_run(
        "launcher=austral", "trainer=gpu", "launcher.gpus_per_node=8", "launcher.python=python"
    )
    assert_refused(code, text, "partition 'gpu' allows at most 4 GPUs per node")


def test_cpu_trainer_with_gpus_is_refused_not_rendered_as_a_gpu_job() -> None:
    """quickstart's preset trainer is cpu: with launcher.gpus_per_node=2 the GPUs would sit idle."""
    code, text = dry_run("launcher=slurm", "launcher.gpus_per_node=2", "launcher.python=python")
    assert_refused(
        code,
        text,
        "launcher.gpus_per_node=2 but trainer.accelerator=cpu (from the experiment's trainer preset)",
    )
    assert "add trainer=gpu" in text
    code, text = dry_run(
        "launcher=austral", "trainer=ddp", "trainer.accelerator=cpu", "launcher.python=python"
    )  # the preset asks for 1 GPU
    assert_refused(code, text, "launcher.gpus_per_node=1 but trainer.accelerator=cpu (on the command line)")


def test_dry_run_shows_what_each_rank_runs_on_and_where_mlflow_writes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/elsewhere.db"
    code, text = dry_run(
        "launcher=slurm",
        "trainer=gpu",
        "launcher.gpus_per_node=2",
        # another Python than this one whatever PATH holds (a bare `python` may be this venv's, as under .ci/test.sh)
        "launcher.python=/opt/cluster-python/bin/python3",
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
    )
    assert code == 0, text
    assert (
        "each rank: accelerator=gpu, devices=2 per node x 1 node(s), strategy=auto, precision=bf16-mixed"
        in text
    )
    assert f"mlflow: {uri}, experiment 'quickstart'" in text
    assert "python: /opt/cluster-python/bin/python3 (launcher.python: another Python than this one" in text
    code, text = dry_run("launcher=slurm", "trainer=ddp", "launcher.tasks_per_node=2", "logger=none")
    assert code == 0, text
    # trainer=ddp says accelerator=auto: on a CPU job it is pinned to cpu, and the dry run says so
    assert (
        "each rank: accelerator=cpu, devices=2 per node x 1 node(s), strategy=ddp, precision=32-true" in text
    )
    assert "mlflow: off (logger=none)" in text
    assert f"python: {sys.executable}, torch " in text


@pytest.mark.skipif(
    not CPU_TORCH, reason="this Python's torch has GPU support; the refusal is for CPU builds"
)
def test_gpu_job_from_a_cpu_torch_is_refused_naming_the_python_and_its_build() -> None:
    build = local_torch_build()
    what = build.describe() if build else "no torch"
    code, text = dry_run("launcher=austral", "trainer=gpu")
    assert_refused(code, text, f"the ranks would run {sys.executable}, which has {what}")
    assert "launcher.python" in text
    # naming this same interpreter explicitly is no way around it
    code, text = dry_run(
        "launcher=slurm", "trainer=gpu", "launcher.gpus_per_node=1", f"launcher.python={sys.executable}"
    )
    assert_refused(code, text, f"which has {what}")


@pytest.mark.parametrize("limit", ["0", "UNLIMITED"])
def test_no_time_limit_is_refused_with_why(limit: str) -> None:
    code, text = dry_run("launcher=slurm", f"launcher.time={limit}")
    assert_refused(
        code, text, f"launcher.time='{limit}' is not a usable Slurm time limit: it means no time limit"
    )
    assert "the requeue signal" in text and "needs a finite one" in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+tags={a%b: 1}", "tags.a%b"),
        ("energy.pue=0.8", "energy.pue=0.8: a PUE is facility energy"),
        ("launcher.preflight=maybe", "launcher.preflight=maybe: give auto (jobs of 2+ nodes), true or false"),
        ("launcher.preflight_slow_factor=0.5", "launcher.preflight_slow_factor=0.5: give a factor above 1"),
        ("launcher.exclude_failed_nodes=perhaps", "launcher.exclude_failed_nodes"),
    ],
)
def test_what_would_fail_on_the_node_is_refused_before_submission(override: str, message: str) -> None:
    """A tag MLflow refuses and an impossible energy setting used to be found by the job on the node."""
    assert_refused(*dry_run("launcher=slurm", override), message)


@pytest.mark.parametrize("request_", [("launcher.gpus_per_node=2",), ("launcher.nodes=2",)])
def test_a_multi_rank_job_on_a_mig_partition_is_refused(request_: tuple[str, ...]) -> None:
    """Issue 23: one process sees one MIG slice and NCCL does not span slices; single-rank jobs still go."""
    code, text = dry_run(
        "launcher=austral", "trainer=ddp", "launcher.partition=hpda_mig", "launcher.python=python", *request_
    )
    assert_refused(code, text, "partition 'hpda_mig' hands out MIG slices")
    assert "cannot train there; use launcher.nodes=1 launcher.gpus_per_node=1" in text
    code, text = dry_run(
        "launcher=austral", "trainer=gpu", "launcher.partition=ar_mig", "launcher.python=python"
    )
    assert code == 0, text
