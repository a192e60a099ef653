"""Issue 11, provenance: `normia reproduce` names the data digest that changed, says identical otherwise, takes a
partner's copy of the data at another place (location overrides only), and says when a copied mlflow.db lacks its
artifacts. Real runs of the CLI on a CSV written here, in a real sqlite MLflow store in a temp working folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ROWS = 120


def write_table(path: Path, bump: int | None = None) -> Path:
    """A small binary classification table (deterministic); bump=i changes one cell of data row i."""
    lines = ["a,b,c,y"]
    for i in range(ROWS):
        a, b, c = (i * 37 % 101) / 50 - 1, (i * 53 % 97) / 48 - 1, (i * 11 % 89) / 44 - 1
        if i == bump:
            a += 5.0
        lines.append(f"{a:.4f},{b:.4f},{c:.4f},{int(a + b - c > 0)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def table_run(path: str, epochs: int = 2) -> list[str]:
    return [
        "experiment=quickstart",
        "data=table_csv",
        f"data.path={path}",
        "data.target=y",
        "data.task=classification",
        "model.in_features=3",
        "model.num_classes=2",
        f"trainer.max_epochs={epochs}",
    ]


def _train(normia_cli, cwd: Path, overrides: list[str], fast: list[str]) -> str:
    result = normia_cli("train", *overrides, *fast, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (done,) = cwd.glob("outputs/*/*/done.json")
    return json.loads(done.read_text())["mlflow_run_id"]


def _runs(store: Path, experiment: str = "quickstart") -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    return client.search_runs(client.get_experiment_by_name(experiment).experiment_id)


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.slow
def test_reproduce_names_the_changed_data_digest_and_is_identical_on_the_same_data(
    normia_cli, workdir: Path, fast_overrides: list[str]
) -> None:
    table = write_table(workdir / "t.csv")
    run_id = _train(normia_cli, workdir, table_run("t.csv"), fast_overrides)
    tags = _runs(workdir / "mlflow.db")[0].data.tags
    recorded = json.loads(tags["normia.input.data.path"])
    assert recorded["rows"] == ROWS and recorded["size"] == table.stat().st_size
    assert recorded["rel_path"] == "t.csv" and recorded["rel_root"] == "cwd" and len(recorded["sha256"]) == 64
    assert tags["normia.device"].startswith("cpu") and tags["normia.version.numpy"]

    same = normia_cli("reproduce", run_id, "--check", cwd=workdir, timeout=300)
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    assert f"data.path sha256 {recorded['sha256'][:12]}" in same.stdout  # "same data as recorded: ..."
    assert "the data differs" not in same.stdout
    assert "result: identical (reproduced: every metric identical)" in same.stdout

    write_table(table, bump=7)  # one cell of one row
    changed = normia_cli("reproduce", run_id, cwd=workdir, timeout=300)
    assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
    out = changed.stdout
    assert f"warning: the data differs: data.path {table}: sha256 " in out
    assert f"the run read sha256 {recorded['sha256'][:12]}" in out
    assert out.index("warning: the data differs") < out.index("reproducing run")  # said before running
    # the CPU preset runs with deterministic=false: judged beyond its rounding drift, and said so (issue 25)
    assert (
        "result: differs (metrics differ beyond rtol=0.0001; the run was made with trainer.deterministic=false"
        in out
    )
    assert f"  likely cause: data digest of data.path changed (sha256 {recorded['sha256'][:12]}.. -> " in out
    # size and rows unchanged by a changed cell of the same width: not claimed as changes
    assert "bytes" not in out.split("likely cause: data digest")[1].splitlines()[0]


@pytest.mark.slow
def test_a_partner_copy_at_another_place_is_the_same_data(
    normia_cli, workdir: Path, fast_overrides: list[str]
) -> None:
    """The data moved (a partner's machine): reproduce says where to point it, then takes data.path= (a location
    override only) and the digest proves it is the same data."""
    table = write_table(workdir / "t.csv")
    run_id = _train(normia_cli, workdir, table_run("t.csv"), fast_overrides)
    copy = workdir / "partner" / "copie.csv"
    copy.parent.mkdir()
    shutil.move(table, copy)

    missing = normia_cli("reproduce", run_id, cwd=workdir, timeout=120)
    err = _one_line_error(missing)
    assert f"the data of run {run_id} is not here: data.path=t.csv" in err
    assert f"normia reproduce {run_id} data.path=/path/to/your/copy" in err
    assert len(list(workdir.glob("outputs/*/*"))) == 1 and len(_runs(workdir / "mlflow.db")) == 1

    refused = normia_cli("reproduce", run_id, "optim.lr=0.1", cwd=workdir, timeout=120)
    err = _one_line_error(refused)
    assert "takes data locations only (data.path, data.root" in err and "'optim.lr=0.1'" in err
    refused = normia_cli("reproduce", run_id, "data.target=a", cwd=workdir, timeout=120)
    assert "'data.target=a' would make another run" in _one_line_error(refused)
    unknown = normia_cli("reproduce", run_id, "data.root=/x", cwd=workdir, timeout=120)
    assert f"data.root is not in run {run_id}'s config (its data locations: data.path)" in _one_line_error(
        unknown
    )
    assert len(list(workdir.glob("outputs/*/*"))) == 1 and len(_runs(workdir / "mlflow.db")) == 1

    moved = normia_cli("reproduce", run_id, f"data.path={copy}", "--check", cwd=workdir, timeout=300)
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-3000:]
    assert f"note: data.path: the same data at another place ({table} -> {copy}, sha256 " in moved.stdout
    assert "the data differs" not in moved.stdout
    assert "result: identical (reproduced: every metric identical)" in moved.stdout
    new = next(r for r in _runs(workdir / "mlflow.db") if r.info.run_id != run_id)
    assert json.loads(new.data.tags["normia.input.data.path"])["abs_path"] == str(copy)
    assert f"data.path={copy}" in new.data.tags["normia.overrides"]  # its own reproduce finds the copy


@pytest.mark.slow
def test_a_copied_mlflow_db_without_its_mlruns_folder_says_where_the_artifacts_were(
    normia_cli, workdir: Path, fast_overrides: list[str]
) -> None:
    here = workdir / "recorded"
    here.mkdir()
    run_id = _train(normia_cli, here, ["experiment=quickstart", "trainer.max_steps=2"], fast_overrides)
    (here / "mlruns").rename(
        here / "mlruns.elsewhere"
    )  # as on another machine: the db's absolute path is gone
    partner = workdir / "partner"
    partner.mkdir()
    shutil.copy(here / "mlflow.db", partner / "mlflow.db")
    before = (partner / "mlflow.db").read_bytes()

    result = normia_cli("reproduce", run_id, cwd=partner, timeout=120)
    err = _one_line_error(result)
    assert f"the artifacts of run {run_id} are not reachable at {here}/mlruns/" in err
    assert "a copy of mlflow.db without the mlruns/ folder that was beside it?" in err
    assert "--tracking-uri" in err and "not recorded by normia train" not in err
    assert sorted(p.name for p in partner.iterdir()) == ["mlflow.db"]  # nothing written
    assert (partner / "mlflow.db").read_bytes() == before
    assert not (here / "mlruns").exists()


def test_digits_runs_record_the_dataset_name_and_scikit_learn_version(
    normia_cli, workdir: Path, fast_overrides: list[str]
) -> None:
    from importlib import metadata

    _train(normia_cli, workdir, ["experiment=quickstart", "trainer.max_steps=2"], fast_overrides)
    (run,) = _runs(workdir / "mlflow.db")
    record = json.loads(run.data.tags["normia.input.data"])
    assert record["kind"] == "package" and record["name"] == "sklearn.datasets.load_digits"
    assert record["package"] == "scikit-learn" and record["version"] == metadata.version("scikit-learn")
    (data,) = run.inputs.dataset_inputs
    source = json.loads(data.dataset.source)
    assert data.dataset.source_type == "code" and source["tags"]["version"] == record["version"]
    assert json.loads(data.dataset.profile)["sha256"] == record["sha256"]


def test_a_non_location_override_is_refused_before_anything_is_opened(normia_cli, workdir: Path) -> None:
    for override in ("optim.lr=0.1", "+data.path=x.csv", "data.path=a.csv,b.csv", "paths.output_dir=/tmp/x"):
        result = normia_cli(
            "reproduce", "0123456789abcdef0123456789abcdef", override, cwd=workdir, timeout=120
        )
        assert "takes data locations only" in _one_line_error(result), override
    assert list(workdir.iterdir()) == []  # no mlflow.db, no outputs/


def test_a_recorded_absolute_path_not_here_is_found_at_the_same_place_relative_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    from normia.reproduce import apply_locations, data_differences, verdict
    from normia.tracking.data_inputs import describe_inputs

    old = tmp_path / "their_machine"
    write_table(old / "data" / "t.csv")
    (was,) = describe_inputs({"path": str(old / "data" / "t.csv")}, roots=[("project", old)])
    assert was.rel_path == "data/t.csv" and was.rel_root == "project"
    mine = tmp_path / "my_machine"
    write_table(mine / "data" / "t.csv")
    shutil.rmtree(old)
    monkeypatch.chdir(mine)
    recorded = OmegaConf.create({"data": {"path": was.abs_path, "target": "y"}})
    overrides, notes = apply_locations(
        recorded, [f"data.path={was.abs_path}", "data.target=y"], [], {"data.path": was}, "r1"
    )
    assert recorded.data.path == str(mine / "data" / "t.csv")
    assert overrides == ["data.target=y", f"data.path={mine / 'data' / 't.csv'}"]
    assert notes == [
        f"data.path: {was.abs_path} is not here; using {mine / 'data' / 't.csv'} (the same place relative to "
        "this working folder; its digest is checked below)"
    ]
    now = describe_inputs(OmegaConf.to_container(recorded.data))
    found, same_place = data_differences({"data.path": was}, now)
    assert found == [] and "the same data at another place" in same_place[0]
    write_table(mine / "data" / "t.csv", bump=3)
    found, _ = data_differences({"data.path": was}, describe_inputs(OmegaConf.to_container(recorded.data)))
    lines = verdict(False, 0.0, found)
    assert lines[0] == "result: differs (metrics differ)"
    assert lines[1].startswith(
        f"  likely cause: data digest of data.path changed (sha256 {was.sha256[:12]}.. -> "
    )
    assert verdict(True, 0.01, found) == ["result: identical (reproduced: every metric within rtol=0.01)"]


@pytest.mark.slow
def test_a_resume_on_changed_data_is_said_and_recorded(
    normia_cli, workdir: Path, fast_overrides: list[str]
) -> None:
    from types import SimpleNamespace

    from normia.reproduce import code_warnings

    table = write_table(workdir / "t.csv")
    run_id = _train(normia_cli, workdir, table_run("t.csv", epochs=1), fast_overrides)
    write_table(table, bump=2)
    resumed = normia_cli("train", *table_run("t.csv", epochs=2), *fast_overrides, "resume=true", cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "warning: the run resumes on other data than it started on: data.path sha256 " in resumed.stdout
    (again,) = _runs(workdir / "mlflow.db")
    assert again.info.run_id == run_id and again.data.tags["normia.resume_data_changes"].startswith(
        "data.path "
    )
    warnings = code_warnings(SimpleNamespace(data=SimpleNamespace(tags=again.data.tags)))
    assert any(
        w.startswith("the run was resumed on other data than it started on (data.path") for w in warnings
    )
