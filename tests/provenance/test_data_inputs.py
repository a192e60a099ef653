"""Issue 11, provenance: what a run records about its inputs (tracking/data_inputs.py), on real files.

Digests of files (one read, rows in the same pass), folders (listing + contents), the partial rule over 1 GiB
(a sparse file: no disk, little time), packaged and bundled datasets, and every data option in configs/data/.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from normia.tracking import data_inputs
from normia.tracking.data_inputs import (
    EDGE_BYTES,
    PARTIAL_ABOVE_BYTES,
    InputRecord,
    describe_inputs,
    file_digest,
    folder_digest,
    input_tags,
    mlflow_datasets,
    recorded_inputs,
)

REPO = Path(__file__).resolve().parents[2]


def test_a_csv_digest_is_the_sha256_of_its_bytes_with_rows_counted_in_the_same_pass(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9")  # last line without its newline
    digest = file_digest(path)
    assert digest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.size == path.stat().st_size and digest.rows == 3 and not digest.partial
    text = tmp_path / "corpus.txt"
    text.write_text("one\ntwo\n")
    assert file_digest(text).rows == 2
    binary = tmp_path / "x.npz"
    binary.write_bytes(b"\x00\n\x01")
    assert file_digest(binary).rows is None


def test_one_changed_cell_changes_the_digest_not_the_size_or_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,y\n1,0\n2,1\n")
    before = file_digest(path)
    path.write_text("a,y\n1,0\n3,1\n")
    after = file_digest(path)
    assert before.sha256 != after.sha256 and (before.size, before.rows) == (after.size, after.rows)


def test_a_folder_digest_changes_when_one_image_changes_or_is_renamed(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(bytes([i, 1, 2, 3]) * 10)
    (root / ".DS_Store").write_bytes(b"finder litter")  # hidden: not data
    first = folder_digest(root)
    assert first.files == 6 and first.size == 240 and first.rows is None
    (root / ".DS_Store").write_bytes(b"other litter")
    assert folder_digest(root).sha256 == first.sha256
    (root / "dog" / "2.png").write_bytes(bytes([9, 1, 2, 3]) * 10)
    changed = folder_digest(root)
    assert changed.sha256 != first.sha256 and changed.size == first.size
    (root / "dog" / "2.png").write_bytes(bytes([2, 1, 2, 3]) * 10)
    assert folder_digest(root).sha256 == first.sha256  # the same contents, the same digest
    (root / "dog" / "2.png").rename(root / "cat" / "9.png")
    assert folder_digest(root).sha256 != first.sha256  # same bytes, another class: another dataset


def test_over_1_gib_the_digest_is_partial_size_and_the_first_and_last_64_mib(tmp_path: Path) -> None:
    """A sparse 1.1 GiB file (no disk used): the digest reads 128 MiB, is labelled partial, and sees a change at
    either end but, by design, not in the middle (the record says so)."""
    path = tmp_path / "big.bin"
    size = PARTIAL_ABOVE_BYTES + PARTIAL_ABOVE_BYTES // 10
    with path.open("wb") as f:
        f.truncate(size)
    first = file_digest(path)
    assert first.partial and first.size == size and first.rows is None
    record = describe_inputs({"_target_": "x.Data", "path": str(path)})[0]
    assert record.partial and record.label().startswith("partial sha256 ")

    def poke(offset: int) -> str:
        with path.open("r+b") as f:
            f.seek(offset)
            f.write(b"\x01")
        os.utime(
            path, ns=(1, os.stat(path).st_mtime_ns + 1_000_000)
        )  # a new cache key, as a real write gives
        return file_digest(path).sha256

    assert poke(size - 10) != first.sha256  # in the last 64 MiB
    tail_changed = file_digest(path).sha256
    assert poke(size // 2) == tail_changed  # the middle is not read: what `partial` warns about
    assert poke(EDGE_BYTES - 1) != tail_changed  # in the first 64 MiB


def test_every_data_option_in_configs_data_records_its_inputs(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("fichier;etiquette;x\na.png;cat;1\n")
    images = tmp_path / "imgs" / "cat"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"png")
    needed = {"path": str(table), "root": str(tmp_path / "imgs"), "target": "x"}
    seen = {}
    for file in sorted((REPO / "configs" / "data").glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(file))
        for key in ("path", "root", "target"):
            if data.get(key) == "???":
                data[key] = needed[key]
        records = describe_inputs(data, cwd=tmp_path)
        assert records, file.name
        assert all(r.kind not in ("missing", "unreadable") and len(r.sha256) == 64 for r in records), records
        seen[file.stem] = {r.key: r for r in records}
        assert mlflow_datasets(records)  # MLflow's own entities accept every record
    digits = seen["digits"]["data"]
    from importlib import metadata

    assert digits.kind == "package" and digits.name == "sklearn.datasets.load_digits"
    assert digits.package == "scikit-learn" and digits.version == metadata.version("scikit-learn")
    co2 = seen["co2"]["data.dataset"]
    assert co2.name == "statsmodels.datasets.co2" and co2.version == metadata.version("statsmodels")
    corpus = seen["shakespeare_bytes"]["data.corpus"]
    assert corpus.kind == "bundled" and corpus.package == "normia" and corpus.rows and corpus.size > 30_000
    assert seen["table_csv"]["data.path"].rows == 1 and seen["table_csv"]["data.path"].rel_path == "t.csv"
    assert seen["image_folder"]["data.root"].kind == "folder" and seen["image_folder"]["data.root"].files == 1
    assert seen["synthetic_lm"]["data"].kind == "generated"
    if "image_table" in seen:  # root null: the images beside the label table are read, so they are recorded
        assert seen["image_table"]["data.root"].kind == "folder"


def test_records_round_trip_through_tags_and_mlflow_dataset_inputs(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,y\n1,2\n")
    records = describe_inputs(
        {"_target_": "normia.data.table.TableDataModule", "path": "t.csv"}, cwd=tmp_path
    )
    tags = input_tags(records)
    assert tags["normia.data.digest.data.path"] == f"sha256:{records[0].sha256}"
    assert list(tags) == ["normia.input.data.path", "normia.data.digest.data.path"]
    back = recorded_inputs({**tags, "normia.input.junk": "not json", "other": "x"})
    assert list(back) == ["data.path"] and back["data.path"] == records[0]
    (entity,) = mlflow_datasets(records)
    assert entity.dataset.name == "t.csv" and entity.dataset.digest == records[0].sha256[:10]
    assert InputRecord.from_json(entity.dataset.profile).sha256 == records[0].sha256
    assert {t.key: t.value for t in entity.tags}["mlflow.data.context"] == "training"


def test_a_missing_or_unreadable_input_is_recorded_as_such_never_raised(tmp_path: Path) -> None:
    (missing,) = describe_inputs({"path": str(tmp_path / "gone.csv")}, cwd=tmp_path)
    assert missing.kind == "missing" and "does not exist" in (missing.error or "")
    if os.geteuid() != 0:
        locked = tmp_path / "locked.csv"
        locked.write_text("a\n")
        locked.chmod(0)
        (record,) = describe_inputs({"path": str(locked)}, cwd=tmp_path)
        assert record.kind == "unreadable"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    data_inputs._CACHE.clear()


def test_a_remote_address_is_recorded_by_address_never_read(tmp_path: Path) -> None:
    (record,) = describe_inputs({"path": "s3://bucket/train.csv"}, cwd=tmp_path)
    assert record.kind == "remote" and record.name == "s3://bucket/train.csv" and len(record.sha256) == 64
    assert mlflow_datasets([record])
