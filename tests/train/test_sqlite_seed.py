"""A new sqlite MLflow store starts from a copy of an empty migrated template (issue 15: MLflow's migrations cost
~2 s per new store): the copy is a store MLflow accepts as its own, and an existing store is never touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from normia.tracking.sqlite_seed import seed_sqlite_store, template_path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NORMIA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_seeded_store_is_a_working_mlflow_store(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "a" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    assert seed_sqlite_store(uri) and db.is_file() and template_path().is_file()
    client = MlflowClient(tracking_uri=uri)
    assert [e.name for e in client.search_experiments()] == ["Default"]  # made by MLflow, not in the template
    run = client.create_run(client.create_experiment("x"))
    client.log_metric(run.info.run_id, "loss", 0.5, step=3)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    # A second store from the same template is independent of the first.
    other = tmp_path / "b.db"
    assert seed_sqlite_store(f"sqlite:///{other}")
    assert [e.name for e in MlflowClient(tracking_uri=f"sqlite:///{other}").search_experiments()] == [
        "Default"
    ]


def test_an_existing_store_or_another_uri_is_left_alone(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not touched")
    assert not seed_sqlite_store(f"sqlite:///{db}")
    assert db.read_bytes() == b"not touched"
    assert not seed_sqlite_store("http://127.0.0.1:5000")
    assert not seed_sqlite_store(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")  # MLflow's own error then
    assert not cache.exists(), "no template is made when nothing is seeded"


@pytest.mark.parametrize("damage", [b"garbage", b""], ids=["not-sqlite", "empty"])
def test_a_corrupt_template_is_made_again_not_copied(tmp_path: Path, cache: Path, damage: bytes) -> None:
    """Before: a damaged template (a crash or a full disk while it was written) was copied as every new store,
    so every run failed with "file is not a database" and left that file behind to fail the next ones too."""
    template = template_path()
    template.parent.mkdir(parents=True)
    template.write_bytes(damage)
    db = tmp_path / "mlflow.db"
    assert seed_sqlite_store(f"sqlite:///{db}")
    assert [e.name for e in MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()] == ["Default"]
    assert template.stat().st_size > 1000  # rebuilt
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()], "no temporary file left"
