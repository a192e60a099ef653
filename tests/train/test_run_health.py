"""Training health and tracking faults (issue 9, sections D and F): a diverged run fails, a misspelt monitor or an
MLflow-refused tag is refused before anything is written, inf reads back as inf, runs have distinct names and
MLflow's system tags, a stop keeps the interrupted step's metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from normia.cli import main
from normia.tracking.mlflow_logger import CUT_MARKER, MAX_PARAM_CHARS, MlflowTracker, metric_name
from normia.tracking.tags import default_run_name
from normia.tracking.values import from_mlflow

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]
DIVERGES = ["experiment=quickstart", "optim=sgd", "optim.lr=1e8", *FAST]


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(workdir: Path) -> list:
    if not (workdir / "mlflow.db").exists():
        return []
    client = _client(workdir)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_diverged_run_fails_and_is_marked_failed(workdir: Path, capsys) -> None:
    assert main(["train", *DIVERGES, "trainer.max_epochs=3"]) == 3
    (line,) = _error_lines(capsys)
    assert "training diverged: loss is nan at step" in line and "optim.lr" in line
    assert not list(workdir.rglob("done.json")), "a diverged run has no result"
    (run,) = _runs(workdir)
    assert run.info.status == "FAILED"


def test_skip_mode_skips_nonfinite_steps_and_finishes(workdir: Path, capsys) -> None:
    assert main(["train", *DIVERGES, "trainer.max_steps=8", "trainer.on_nonfinite_loss=skip"]) == 0
    assert "optimizer step skipped" in capsys.readouterr().out
    (done,) = [json.loads(p.read_text()) for p in workdir.rglob("done.json")]
    assert done["global_step"] == 8


def test_skip_mode_in_a_real_run(workdir: Path, capsys, monkeypatch) -> None:
    """The skip mode itself, whatever the schema holds: only the reading of the config key is replaced."""
    import normia.training.build

    monkeypatch.setattr(normia.training.build, "nonfinite_mode", lambda cfg: "skip")
    assert main(["train", *DIVERGES, "trainer.max_steps=8"]) == 0
    out = capsys.readouterr().out
    assert "optimizer step skipped" in out and "step(s) with a non-finite loss" in out
    (done,) = [json.loads(p.read_text()) for p in workdir.rglob("done.json")]
    assert done["global_step"] == 8 and done["skipped_steps"] >= 1
    (run,) = _runs(workdir)
    assert run.info.status == "FINISHED" and run.data.metrics["train/skipped_steps"] >= 1


def test_misspelt_monitor_is_refused_before_training(workdir: Path, capsys) -> None:
    assert main(["train", "experiment=quickstart", "monitor=val/accuracy", *FAST]) == 2
    (line,) = _error_lines(capsys)
    assert "monitor='val/accuracy'" in line and "did you mean 'val/acc'" in line
    assert not (workdir / "outputs").exists(), "a refused job writes nothing"
    assert _runs(workdir) == []


def test_misspelt_train_monitor_is_refused_and_a_real_one_accepted(workdir: Path, capsys) -> None:
    base = ["train", "experiment=quickstart", *FAST, "trainer.max_steps=3", "monitor_mode=min"]
    assert main([*base, "monitor=train/los"]) == 2
    assert "did you mean 'train/loss'" in _error_lines(capsys)[0]
    assert not (workdir / "outputs").exists()
    assert main([*base, "monitor=train/loss"]) == 0


def test_a_monitor_never_measured_is_said_once(workdir: Path, capsys) -> None:
    args = ["train", "experiment=quickstart", *FAST, "trainer.max_steps=3", "trainer.limit_val_batches=0"]
    assert main(args) == 0
    assert capsys.readouterr().out.count("monitor=val/acc was never measured (no validation ran)") == 1


def test_inf_metric_reads_back_as_inf(workdir: Path) -> None:
    tracker = MlflowTracker(f"sqlite:///{workdir / 'mlflow.db'}", "inf", system_metrics=False)
    tracker.begin()
    tracker.log_metrics({"val/loss": math.inf, "val/gain": -math.inf, "val/nan": math.nan}, step=3)
    tracker.finalize("success")
    run = _client(workdir).get_run(tracker.version)
    got = {k: from_mlflow(v) for k, v in run.data.metrics.items()}
    assert got["val/loss"] == math.inf and got["val/gain"] == -math.inf and math.isnan(got["val/nan"])
    assert run.data.tags["normia.nonfinite.val/loss"].startswith("inf at step 3")
    assert from_mlflow(1.5) == 1.5


def test_refused_tag_names_create_no_run(workdir: Path, capsys) -> None:
    assert main(["train", "experiment=quickstart", *FAST, "trainer.max_steps=3", "+tags={a%b: 1}"]) == 2
    (line,) = _error_lines(capsys)
    assert line.startswith("error: tags.a%b: MLflow refuses this tag name")
    assert main(["train", "experiment=quickstart", *FAST, "trainer.max_steps=3", "+tags={../up: 1}"]) == 2
    assert "tags.../up" in _error_lines(capsys)[0]
    assert _runs(workdir) == [] and not (workdir / "outputs").exists()


def test_failure_after_run_creation_ends_the_run_failed(workdir: Path) -> None:
    tracker = MlflowTracker(
        f"sqlite:///{workdir / 'mlflow.db'}", "fail", params={"ok": 1}, texts={"../../bad.txt": "x"}
    )
    tracker.system_metrics = False
    with pytest.raises(Exception):  # noqa: B017 (whatever MLflow raises for a path leaving the artifact root)
        tracker.begin()
    (run,) = _runs(workdir)
    assert run.info.status == "FAILED"


def test_long_param_is_marked_as_cut(workdir: Path) -> None:
    tracker = MlflowTracker(
        f"sqlite:///{workdir / 'mlflow.db'}", "cut", params={"long": "x" * 7000}, system_metrics=False
    )
    tracker.begin()
    tracker.finalize("success")
    value = _client(workdir).get_run(tracker.version).data.params["long"]
    assert len(value) == MAX_PARAM_CHARS and value.endswith(CUT_MARKER)


def test_sweep_runs_get_distinct_names_and_mlflow_system_tags(workdir: Path) -> None:
    assert (
        main(["train", "-m", "experiment=quickstart", *FAST, "trainer.max_steps=2", "optim.lr=1e-3,2e-3"])
        == 0
    )
    runs = _runs(workdir)
    names = sorted(r.info.run_name for r in runs)
    assert len(set(names)) == 2 and all(n.startswith("quickstart ") for n in names)
    for run in runs:  # named after the job's own folder (which outputs.py names after the swept values)
        assert run.info.run_name.endswith(Path(run.data.tags["normia.output_dir"]).name)
    tags = runs[0].data.tags
    assert tags["mlflow.source.name"] == "normia train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] and tags["mlflow.source.git.commit"] == tags["normia.git_commit"]
    (data,) = runs[0].inputs.dataset_inputs
    assert data.dataset.name == "DigitsDataModule" and len(data.dataset.digest) == 10


def test_run_names_of_numbered_jobs_and_array_tasks_differ(monkeypatch) -> None:
    a = default_run_name("exp", "outputs/exp/multirun/abc/0", ["experiment=exp", "optim.lr=1"])
    b = default_run_name("exp", "outputs/exp/multirun/abc/1", ["experiment=exp", "optim.lr=2"])
    assert a == "exp #0 optim.lr=1" and b == "exp #1 optim.lr=2"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert (
        default_run_name("exp", "outputs/exp/2026-01-01_00-00-00", []) == "exp 2026-01-01_00-00-00 [task 7]"
    )


def test_stop_keeps_the_metrics_of_the_interrupted_step(workdir: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    stopper = ["+callbacks.ctrl_c._target_=stop_at_step.CtrlCAtStep", "+callbacks.ctrl_c.step=10"]
    args = ["train", "experiment=quickstart", *FAST, "trainer.max_steps=30", "trainer.log_every_n_steps=5"]
    assert main([*args, *stopper]) == 130
    (run,) = _runs(workdir)
    steps = [m.step for m in _client(workdir).get_metric_history(run.info.run_id, "train/loss")]
    assert max(steps) == 9, steps  # log step of the 10th batch (Lightning counts log steps from 0)


def test_refused_by_lightning_leaves_no_output_folder(workdir: Path, capsys) -> None:
    args = ["train", "experiment=quickstart", *FAST, "trainer.val_check_interval=50"]
    assert main(args) == 2
    assert "val_check_interval" in _error_lines(capsys)[0]
    assert not (workdir / "outputs").exists(), "refused means nothing written"
    assert _runs(workdir) == []


def test_a_plain_run_prints_no_unactionable_noise(normia_cli, workdir: Path) -> None:
    done = normia_cli(
        "train", "experiment=quickstart", *FAST, "trainer.max_steps=2", cwd=workdir, timeout=300
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    for noise in (
        "srun",
        "Tip:",
        "litlogger",
        "GPU available",
        "LeafSpec",
        "could not find the monitored key",
    ):
        assert noise not in text, noise


@pytest.mark.slow
def test_diverged_ddp_run_stops_every_rank(normia_cli, workdir: Path) -> None:
    """Two ranks: both stop at the same step (no rank left waiting in an all-reduce), the run is FAILED."""
    args = [
        "train",
        *DIVERGES,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=20",
    ]
    done = normia_cli(*args, cwd=workdir, timeout=300)
    assert done.returncode == 3, done.stderr  # the diverged code, not a generic rank failure
    assert done.stderr.count("training diverged: loss is") == 1, "said once, by rank 0"
    assert "failed with exit code" not in done.stderr
    (run,) = _runs(workdir)
    assert run.info.status == "FAILED"


def test_done_json_stays_json_with_non_finite_values() -> None:
    from normia.training.health import json_safe

    text = json.dumps(
        json_safe({"result": math.nan, "m": {"a": math.inf, "b": [1.0, -math.inf]}}), allow_nan=False
    )
    assert json.loads(text) == {"result": "nan", "m": {"a": "inf", "b": [1.0, "-inf"]}}


def test_metrics_mlflow_refuses_end_the_run_failed_never_running(workdir: Path) -> None:
    tracker = MlflowTracker(f"sqlite:///{workdir / 'mlflow.db'}", "refused", system_metrics=False)
    tracker.begin()
    tracker.log_metrics({"val/a%b": 1.0, "acc@5": 0.5}, step=1)
    tracker.log_metrics({"x" * 300: 1.0}, step=2)  # longer than MLflow's 250-character names
    with pytest.raises(Exception):  # noqa: B017 (MLflow's own error for the name)
        tracker.finalize("success")
    run = _client(workdir).get_run(tracker.version)
    assert run.info.status == "FAILED"
    assert metric_name("val/a%b") == "val/a_b" and metric_name("acc@5") == "acc_at_5"


def test_a_diverged_sweep_job_is_reported_and_the_other_jobs_still_run(workdir: Path, capsys) -> None:
    """One setting diverging must not end the sweep: its job says so in one line, the next job runs, the table
    shows 'diverged' rather than a result, and the command exits 3 (not 0: a sweep with a failure)."""
    args = [
        "train",
        "-m",
        "experiment=quickstart",
        "optim=sgd",
        "optim.lr=1e8,1e-2",
        "trainer.max_steps=6",
        *FAST,
    ]
    assert main(args) == 3
    out, err = capsys.readouterr()
    assert err.count("training diverged") == 1
    assert "diverged" in out.split("== sweep of 2 job(s)")[1]
    assert len(list(workdir.rglob("done.json"))) == 1  # the lr=1e-2 job finished


def test_a_stop_after_an_unchecked_divergence_fails_the_run(workdir: Path, capsys, monkeypatch) -> None:
    """The loss is checked every log_every_n_steps (no host read per step) and before any checkpoint: a Ctrl-C
    between a divergence and its check saves nothing diverged and ends the run FAILED (exit 3), not KILLED."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    stopper = ["+callbacks.ctrl_c._target_=stop_at_step.CtrlCAtStep", "+callbacks.ctrl_c.step=6"]
    args = ["train", *DIVERGES, "trainer.max_steps=30", "trainer.log_every_n_steps=20", *stopper]
    assert main(args) == 3
    (line,) = _error_lines(capsys)
    assert "training diverged: loss is nan at step" in line
    (run,) = _runs(workdir)
    assert run.info.status == "FAILED"
    assert not list(workdir.rglob("*.ckpt")), "no checkpoint of diverged weights"
