"""`normia search ... launcher=slurm workers=3` on the tests' two-node Slurm cluster: one job array of 3 tasks, each
a worker pulling trials from the journal-file study in the shared search folder, completes the study with exactly N
finished trials, every trial run inside a Slurm task and recorded as a child MLflow run of the search."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

N = 4
STUDY = "quickstart-quickstart"
ARGS = [
    "experiment=quickstart",
    "search=quickstart",
    f"n_trials={N}",
    "workers=3",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "logger.system_metrics=false",
    "launcher=slurm",
    "launcher.cpus_per_task=1",
    "launcher.time=00:15:00",
]


def test_three_task_array_completes_a_study(workdir: Path, normia_cli) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    result = normia_cli("search", *ARGS, cwd=workdir, timeout=600)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "submitted job array" in out and "(3 worker task(s))" in out
    assert f"== search '{STUDY}': {N} of {N} trials finished" in out

    search_dir = workdir / "outputs" / "search" / STUDY
    storage = JournalStorage(JournalFileBackend(str(search_dir / "study.journal")))
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == N, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert not [t for t in trials if t.state.name == "RUNNING"]
    workers = {t.user_attrs["search.worker"] for t in finished}
    assert all(":slurm=" in w for w in workers), workers  # every trial ran in a task of the array
    assert len(list((search_dir / "slurm").rglob("*_log.out"))) == 3  # three tasks, one log each

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], max_results=50)
    parent = next(r for r in runs if r.info.run_name == STUDY)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len([r for r in children if r.data.tags.get("search.state") in ("COMPLETE", "PRUNED")]) == N


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["launcher.partition=nope"], "nope"),
        (["launcher.nodes=2"], "each search worker is one process"),
    ],
)
def test_a_bad_array_request_is_refused_before_anything_is_written(
    workdir: Path, normia_cli, extra: list[str], expected: str
) -> None:
    result = normia_cli("search", *ARGS, *extra, cwd=workdir)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == []
