"""Issue 25 D, dry runs that passed doomed jobs: the data is checked against the world size the plan prints (once,
before submission or before local ranks start), the partition's GPU model is printed, a multi-node job's paths on
node-local storage are warned about, and the plan says where checkpoints go and that the job resumes by itself.
Without a cluster (launcher.query_cluster=false) except where said."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from normia.data.world_size import DataPerRank
from tests.conftest import FAST, run_normia

OFFLINE = ["experiment=quickstart", "launcher.query_cluster=false", "trainer.enable_progress_bar=false"]
H200_2X4 = ["launcher=austral", "trainer=ddp", "launcher.partition=gpu_h200", "launcher.nodes=2",
            "launcher.gpus_per_node=4", "launcher.python=python"]  # fmt: skip


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in ("LOCAL_WORK_DIR", "SLURM_TMPDIR"):
        monkeypatch.delenv(variable, raising=False)


def dry_run(*argv: str) -> tuple[int, str]:
    from normia.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(["train", *OFFLINE, *argv, "--dry-run"])
    return code, buffer.getvalue()


def test_the_issues_example_five_samples_per_rank_for_a_batch_of_sixteen() -> None:
    sizes = DataPerRank(train=40, val=20, batch_size=16, world_size=8)
    message = sizes.problem("2 node(s) x 4 GPU(s)") or ""
    assert "40 training samples over 8 ranks (2 node(s) x 4 GPU(s)) is 5 per rank" in message
    assert "data.batch_size=16" in message and "lower data.batch_size to 5 or less" in message
    assert "validation sample(s) for 8 ranks" in (DataPerRank(80, 7, 8, 8).problem("8") or "")
    assert DataPerRank(128, 8, 16, 8).problem("8") is None


def test_a_dry_run_refuses_a_batch_larger_than_a_ranks_share_in_one_line() -> None:
    """1438 digits over 2 nodes x 4 GPUs is 179 per rank: batch 200 passed the dry run and failed every rank."""
    code, text = dry_run(*H200_2X4, "data.batch_size=200")
    assert code == 2, text
    [line] = text.strip().splitlines()
    assert line.startswith("error: 1438 training samples over 8 ranks (2 node(s) x 4 GPU(s)) is 179 per rank")
    assert list(Path.cwd().iterdir()) == [], "a refused request wrote files"


def test_the_plan_prints_the_data_per_rank_the_gpu_model_and_the_checkpoints() -> None:
    code, text = dry_run(
        *H200_2X4, "paths.output_root=/srv/shared/runs"
    )  # pytest's tmp_path is node-local /tmp
    assert code == 0, text
    assert "partition gpu_h200, GPU h200 (H200 nodes" in text
    assert "data: 1438 training samples, 179 per rank x 8 rank(s) (batch 64), 359 validation" in text
    assert "/checkpoints, every 30 min; a preempted or timed-out job saves, is requeued and resumes" in text
    assert "warning:" not in text


@pytest.mark.parametrize(
    ("override", "env", "key"),
    [
        ("paths.output_root=/tmp/normia-runs", {}, "paths.output_dir=/tmp/normia-runs/"),
        ("paths.output_root=/dev/shm/runs", {}, "paths.output_dir=/dev/shm/runs/"),
        (
            "paths.output_root=/scratch/node/runs",
            {"LOCAL_WORK_DIR": "/scratch/node"},
            "($LOCAL_WORK_DIR (/scratch/node))",
        ),
    ],
)
def test_node_local_paths_of_a_multi_node_job_are_warned_about(
    override: str, env: dict[str, str], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    code, text = dry_run(*H200_2X4, override)
    assert code == 0, text
    [warning] = [line for line in text.splitlines() if line.startswith("warning:")]
    assert key in warning and "spans 2 nodes" in warning and "shared filesystem" in warning
    code, text = dry_run(
        *H200_2X4[:3], "launcher.nodes=1", "launcher.gpus_per_node=4", "launcher.python=python", override
    )
    assert code == 0 and "warning:" not in text, text  # one node: its /tmp is the job's only one


def test_a_local_multi_rank_run_checks_the_data_once_before_any_rank_starts(tmp_path: Path) -> None:
    result = run_normia(
        "train", "experiment=quickstart", *FAST, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "data.batch_size=1000", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr == (
        "error: 1438 training samples over 2 ranks (trainer.devices=2) is 719 per rank, fewer than "
        "data.batch_size=1000: lower data.batch_size to 719 or less, use fewer ranks, or add data\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_data_and_model_locations_are_looked_at_too() -> None:
    from omegaconf import OmegaConf

    from normia.launch.plan_notes import node_local_warnings
    from normia.launch.spec import parse_launcher

    cfg = OmegaConf.create(
        {
            "paths": {"output_dir": "/srv/shared/run"},
            "data": {"path": "${oc.env:LOCAL_WORK_DIR}/corpus.txt", "batch_size": 8},
            "model": {"path": "/tmp/llama-1b", "hidden": 64, "tokenizer": {"path": "/srv/shared/tok"}},
        }
    )
    two = parse_launcher(OmegaConf.create({"name": "slurm", "nodes": 2}))
    warnings = node_local_warnings(cfg, two)
    assert [w.split(" is on ")[0] for w in warnings] == [
        "warning: data.path=${oc.env:LOCAL_WORK_DIR}/corpus.txt",
        "warning: model.path=/tmp/llama-1b",
    ]
    assert node_local_warnings(cfg, parse_launcher(OmegaConf.create({"name": "slurm", "nodes": 1}))) == []


def dry_run_of(*argv: str) -> tuple[int, str]:
    """A dry run of exactly `argv` (no default experiment or trainer) on 2 H200 nodes of the Austral preset."""
    from normia.cli import main

    gpus = ["launcher=austral", "launcher.partition=gpu_h200", "launcher.nodes=2", "launcher.gpus_per_node=4",
            "launcher.python=python", "launcher.query_cluster=false", "paths.output_root=/srv/shared/runs"]  # fmt: skip
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(["train", *gpus, *argv, "--dry-run"])
    return code, buffer.getvalue()


@pytest.mark.parametrize(
    ("argv", "precision"),
    [
        (
            ["experiment=quickstart", "trainer=fsdp"],
            "bf16-mixed",
        ),  # the CPU preset's 32-true: no choice for GPUs
        (["experiment=quickstart", "trainer=ddp"], "bf16-mixed"),
        (
            ["experiment=quickstart", "trainer=fsdp", "trainer.precision=32-true"],
            "32-true",
        ),  # asked for: kept
        (["experiment=gpu_llama_125m", "trainer=fsdp"], "bf16-mixed"),  # the experiment's own bf16 survives
    ],
)
def test_fsdp_and_ddp_on_gpus_default_to_bf16_mixed(argv: list[str], precision: str) -> None:
    code, text = dry_run_of(*argv)
    assert code == 0, text
    strategy = "fsdp" if "trainer=fsdp" in argv else "ddp"
    assert f"strategy={strategy}, precision={precision}" in text
    # the dry run flags a precision that differs from the experiment's (issue 25): only where normia chose it
    flagged = f"note: precision bf16-mixed, not the experiment's 32-true: trainer={strategy} on GPUs" in text
    assert flagged == (argv[0] == "experiment=quickstart" and precision == "bf16-mixed"), text


def test_the_1b_experiment_is_tracked_under_its_own_name() -> None:
    code, text = dry_run_of("experiment=gpu_llama_1b")
    assert code == 0, text
    assert "experiment 'gpu_llama_1b'" in text and "/gpu_llama_1b/" in text and "precision=bf16-mixed" in text
